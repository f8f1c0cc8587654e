// Gondola's Markdown renderer: model text in, DOM nodes out.
//
// It builds every node with createElement and puts every piece of text in with textContent or
// text nodes, so nothing a model writes is ever parsed as HTML: `<img onerror=…>` stays text.
// Links are made only for http:, https: and mailto: URLs; anything else is shown as written.
// Covered: paragraphs, headings, emphasis, strikethrough, inline code, fenced code blocks (with
// a copy button), ordered and unordered lists (nested by indentation), blockquotes, rules.

const LINK_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const ESCAPABLE = "\\`*_{}[]()#+-.!~<>|\"'";
const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}>/;
const BLANK = /^\s*$/;

/** A fragment holding `text` rendered as Markdown. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"), fragment);
  return fragment;
}

/** The URL `href` stands for, if it may be a link (http, https or mailto); otherwise null. */
export function safeUrl(href) {
  let url;
  try {
    url = new URL(href.trim());
  } catch {
    return null;
  }
  return LINK_PROTOCOLS.has(url.protocol) ? url.href : null;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function indentOf(line) {
  const match = /^[ \t]*/.exec(line)[0];
  let width = 0;
  for (const c of match) width += c === "\t" ? 4 : 1;
  return width;
}

/** `line` without up to `columns` columns of leading whitespace. */
function dedent(line, columns) {
  let width = 0;
  let at = 0;
  while (at < line.length && width < columns && (line[at] === " " || line[at] === "\t")) {
    width += line[at] === "\t" ? 4 : 1;
    at += 1;
  }
  return line.slice(at);
}

function startsBlock(line) {
  return FENCE_OPEN.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || LIST_ITEM.test(line);
}

function renderBlocks(lines, parent) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    let match = FENCE_OPEN.exec(line);
    if (match) {
      const fence = match[1];
      const body = [];
      i += 1;
      while (i < lines.length) {
        const closing = lines[i].trim();
        if (closing.length >= fence.length && closing === fence[0].repeat(closing.length)) {
          i += 1;
          break;
        }
        body.push(lines[i]);
        i += 1;
      }
      parent.append(codeBlock(body.join("\n"), match[2]));
      continue;
    }
    match = HEADING.exec(line);
    if (match) {
      const heading = element(`h${match[1].length}`);
      renderInline(match[2] ?? "", heading);
      parent.append(heading);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(element("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        inner.push(lines[i].replace(/^ {0,3}> ?/, ""));
        i += 1;
      }
      const quote = element("blockquote");
      renderBlocks(inner, quote);
      parent.append(quote);
      continue;
    }
    match = LIST_ITEM.exec(line);
    if (match) {
      i = renderList(lines, i, parent);
      continue;
    }
    const paragraph = [];
    while (i < lines.length && !BLANK.test(lines[i]) && (paragraph.length === 0 || !startsBlock(lines[i]))) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    const p = element("p");
    paragraph.forEach((text, index) => {
      if (index > 0) p.append(element("br"));
      renderInline(text, p);
    });
    parent.append(p);
  }
}

/** Renders the list starting at `start`; returns the index of the first line after it. */
function renderList(lines, start, parent) {
  const first = LIST_ITEM.exec(lines[start]);
  const base = first[1].length;
  const ordered = /\d/.test(first[2]);
  const list = element(ordered ? "ol" : "ul");
  if (ordered) {
    const number = Number.parseInt(first[2], 10);
    if (number !== 1) list.start = number;
  }
  let i = start;
  while (i < lines.length) {
    const match = LIST_ITEM.exec(lines[i]);
    if (!match || match[1].length > base + 1 || /\d/.test(match[2]) !== ordered) break;
    const item = [match[3] ?? ""];
    const contentIndent = match[1].length + match[2].length + 1;
    i += 1;
    while (i < lines.length) {
      const line = lines[i];
      if (BLANK.test(line)) {
        const next = lines[i + 1];
        if (next !== undefined && !BLANK.test(next) && indentOf(next) >= 2) {
          item.push("");
          i += 1;
          continue;
        }
        break;
      }
      const indent = indentOf(line);
      if (indent >= 2) {
        item.push(dedent(line, Math.min(indent, contentIndent)));
        i += 1;
        continue;
      }
      if (startsBlock(line)) break;
      item.push(line);
      i += 1;
    }
    const li = element("li");
    const content = document.createDocumentFragment();
    renderBlocks(item, content);
    // A one-paragraph item is written inline ("tight"), as lists usually are.
    if (content.childNodes.length === 1 && content.firstChild.tagName === "P") {
      li.append(...content.firstChild.childNodes);
    } else {
      li.append(content);
    }
    list.append(li);
    // Blank lines between items of the same list do not end it.
    let next = i;
    while (next < lines.length && BLANK.test(lines[next])) next += 1;
    const following = next < lines.length ? LIST_ITEM.exec(lines[next]) : null;
    if (next > i && following && following[1].length <= base + 1 && /\d/.test(following[2]) === ordered) {
      i = next;
    }
  }
  parent.append(list);
  return i;
}

function codeBlock(code, language) {
  const block = element("div", "codeblock");
  const head = element("div", "codeblock-head");
  head.append(element("span", "codeblock-lang", language || "text"));
  const copy = element("button", "codeblock-copy", "Copy");
  copy.type = "button";
  copy.setAttribute("aria-label", language ? `Copy ${language} code` : "Copy code");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => {
      copy.textContent = "Copy";
    }, 1500);
  });
  head.append(copy);
  const pre = element("pre");
  const codeNode = element("code", null, code);
  if (language) codeNode.dataset.language = language;
  pre.append(codeNode);
  block.append(head, pre);
  return block;
}

function isWordChar(c) {
  return c !== undefined && /[\p{L}\p{N}]/u.test(c);
}

/** Finds a closing `marker` for emphasis opened before `from`; -1 if none. */
function findClosing(text, marker, from) {
  let at = from;
  while (at < text.length) {
    const found = text.indexOf(marker, at);
    if (found < 0) return -1;
    const before = text[found - 1];
    const after = text[found + marker.length];
    const rightFlanking = before !== undefined && !/\s/.test(before);
    const singleOk = marker.length > 1 || after !== marker[0];
    const underscoreOk = marker[0] !== "_" || !isWordChar(after);
    if (found > from && rightFlanking && singleOk && underscoreOk && text[found - 1] !== "\\") return found;
    at = found + marker.length;
  }
  return -1;
}

/** Finds the `]` closing the `[` at `open`, allowing nested brackets; -1 if none. */
function closingBracket(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i += 1) {
    if (text[i] === "\\") {
      i += 1;
    } else if (text[i] === "[") {
      depth += 1;
    } else if (text[i] === "]") {
      depth -= 1;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** Reads `(destination "title")` at `open`; returns [destination, end] or null. */
function linkDestination(text, open) {
  if (text[open] !== "(") return null;
  let depth = 0;
  for (let i = open; i < text.length; i += 1) {
    if (text[i] === "(") depth += 1;
    else if (text[i] === ")") {
      depth -= 1;
      if (depth === 0) {
        let destination = text.slice(open + 1, i).trim();
        const titled = /^(\S+)\s+(["']).*\2$/.exec(destination);
        if (titled) destination = titled[1];
        if (destination.startsWith("<") && destination.endsWith(">")) destination = destination.slice(1, -1);
        return [destination, i + 1];
      }
    }
  }
  return null;
}

function link(href, parent) {
  const a = element("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  parent.append(a);
  return a;
}

const BARE_URL = /^https?:\/\/[^\s<>"]+/;

/** Appends the inline Markdown in `text` to `parent`. */
function renderInline(text, parent) {
  let buffer = "";
  const flush = () => {
    if (buffer) parent.append(document.createTextNode(buffer));
    buffer = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (text[i + run] === "`") run += 1;
      const fence = "`".repeat(run);
      let close = text.indexOf(fence, i + run);
      while (close >= 0 && text[close + run] === "`") close = text.indexOf(fence, close + run + 1);
      if (close >= 0) {
        flush();
        let code = text.slice(i + run, close);
        if (code.length > 2 && code.startsWith(" ") && code.endsWith(" ")) code = code.slice(1, -1);
        parent.append(element("code", null, code));
        i = close + run;
      } else {
        buffer += fence;
        i += run;
      }
      continue;
    }
    if (c === "*" || c === "_" || (c === "~" && text[i + 1] === "~")) {
      const double = text[i + 1] === c;
      const marker = double ? c + c : c;
      const after = text[i + marker.length];
      const opens = after !== undefined && !/\s/.test(after) && (c !== "_" || !isWordChar(text[i - 1]));
      const close = opens ? findClosing(text, marker, i + marker.length) : -1;
      if (close >= 0) {
        flush();
        const tag = c === "~" ? "del" : double ? "strong" : "em";
        const node = element(tag);
        renderInline(text.slice(i + marker.length, close), node);
        parent.append(node);
        i = close + marker.length;
        continue;
      }
      buffer += marker;
      i += marker.length;
      continue;
    }
    if (c === "[" || (c === "!" && text[i + 1] === "[")) {
      const open = c === "!" ? i + 1 : i;
      const close = closingBracket(text, open);
      const destination = close >= 0 ? linkDestination(text, close + 1) : null;
      if (destination) {
        const [href, end] = destination;
        const label = text.slice(open + 1, close);
        const url = safeUrl(href);
        if (url) {
          flush();
          // Images are never loaded (the page may fetch from its own origin only); an image
          // becomes a link to it, labelled with its description.
          const a = link(url, parent);
          if (c === "!") a.textContent = label || url;
          else renderInline(label, a);
        } else {
          buffer += text.slice(i, end);
        }
        i = end;
        continue;
      }
      buffer += c;
      i += 1;
      continue;
    }
    if (c === "<") {
      const auto = /^<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*)>/.exec(text.slice(i));
      if (auto && safeUrl(auto[1])) {
        flush();
        link(safeUrl(auto[1]), parent).textContent = auto[1];
        i += auto[0].length;
        continue;
      }
    }
    if ((c === "h" || c === "H") && !isWordChar(text[i - 1])) {
      const bare = BARE_URL.exec(text.slice(i));
      if (bare) {
        let url = bare[0];
        // Trailing punctuation belongs to the sentence, not the URL.
        while (/[.,;:!?'")\]*_]$/.test(url) && !(url.endsWith(")") && url.split("(").length >= url.split(")").length)) {
          url = url.slice(0, -1);
        }
        const href = safeUrl(url);
        if (href) {
          flush();
          link(href, parent).textContent = url;
          i += url.length;
          continue;
        }
      }
    }
    buffer += c;
    i += 1;
  }
  flush();
}
