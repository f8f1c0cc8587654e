"""A tool-calling loop with the official openai client, then with LangChain's bind_tools: the
model calls a function, the client runs it and answers with a tool message, the model replies.
Streaming and not. Prints one JSON line of what it saw."""
import json
import os

import openai

client = openai.OpenAI()
MODEL = "default"
UNITS = ["celsius", "fahrenheit"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": UNITS},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time now in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}
TOOLS = [WEATHER, TIME]


def check_arguments(name, arguments):
    """The arguments as the function's schema asks; raises if not."""
    args = json.loads(arguments)
    if name == "get_weather":
        assert set(args) == {"city", "unit"}, args
        assert isinstance(args["city"], str), args
        assert args["unit"] in UNITS, args
    elif name == "get_time":
        assert isinstance(args["zone"], str), args
    else:
        raise AssertionError(f"unknown function {name}")
    return args


def run_tool(name, args):
    if name == "get_weather":
        return json.dumps({"city": args["city"], "temperature": 18, "unit": args["unit"]})
    return json.dumps({"zone": args["zone"], "time": "12:00"})


def create(messages, stream, **options):
    """One turn: (content, tool calls as dicts, finish reason, chunks)."""
    if not stream:
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, temperature=0, max_tokens=96, **options
        )
        message = reply.choices[0].message
        calls = [call.model_dump() for call in message.tool_calls or []]
        return message.content, calls, reply.choices[0].finish_reason, 1
    content, calls, finish, chunks = "", {}, None, 0
    for chunk in client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=96, stream=True, **options
    ):
        chunks += 1
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if delta.id:
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["function"]["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["function"]["arguments"] += delta.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    return content or None, [calls[index] for index in sorted(calls)], finish, chunks


def tool_loop(stream, parallel):
    """Calls, answers and replies until the model answers in text (at most four turns)."""
    messages = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]
    executed = []
    first_finish = None
    for turn in range(4):
        # The first turn must call the weather function; the last may not call anything.
        choice = {"type": "function", "function": {"name": "get_weather"}} if turn == 0 else ("none" if turn == 3 else "auto")
        content, calls, finish, chunks = create(
            messages, stream, tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel
        )
        if turn == 0:
            first_finish = finish
            assert calls and calls[0]["function"]["name"] == "get_weather", calls
        if not calls:
            assert finish in ("stop", "length"), finish
            assert content, "a text reply"
            return {"turns": turn + 1, "executed": executed, "first_finish": first_finish, "reply": content, "chunks": chunks}
        # A reply may also run out of tokens after its last whole call ("length").
        assert finish in ("tool_calls", "length"), finish
        assert content is None or stream, content
        messages.append({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            assert call["id"], call
            name = call["function"]["name"]
            args = check_arguments(name, call["function"]["arguments"])
            executed.append({"name": name, "args": args})
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": run_tool(name, args)})
    raise AssertionError("no text reply after four turns")


def required_call():
    """tool_choice=required with two functions: one of them, arguments to its schema."""
    _, calls, finish, _ = create(
        [{"role": "user", "content": "What time is it in Tokyo?"}],
        False,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert finish == "tool_calls" and len(calls) == 1, (finish, calls)
    check_arguments(calls[0]["function"]["name"], calls[0]["function"]["arguments"])
    return calls[0]["function"]["name"]


def legacy_functions():
    """The deprecated functions/function_call parameters get the legacy reply shape."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
        temperature=0,
        max_tokens=64,
    )
    message = reply.choices[0].message
    check_arguments("get_weather", message.function_call.arguments)
    return {"finish": reply.choices[0].finish_reason, "name": message.function_call.name}


def langchain_loop():
    """LangChain's ChatOpenAI.bind_tools: a call, a ToolMessage, a reply."""
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model=MODEL, temperature=0, max_tokens=96, base_url=os.environ["OPENAI_BASE_URL"])
    bound = model.bind_tools([WEATHER], tool_choice="get_weather")
    history = [HumanMessage("What is the weather in Rome, in celsius?")]
    called = bound.invoke(history)
    assert called.tool_calls, called
    call = called.tool_calls[0]
    check_arguments(call["name"], json.dumps(call["args"]))
    history += [called, ToolMessage(run_tool(call["name"], call["args"]), tool_call_id=call["id"])]
    answer = model.bind_tools([WEATHER], tool_choice="none").invoke(history)
    assert isinstance(answer.content, str) and answer.content, answer
    streamed = None
    for piece in bound.stream(history[:1]):
        streamed = piece if streamed is None else streamed + piece
    assert streamed.tool_calls and streamed.tool_calls[0]["name"] == "get_weather", streamed
    return {"name": call["name"], "reply": answer.content, "streamed_args": streamed.tool_calls[0]["args"]}


print(json.dumps({
    "plain": tool_loop(stream=False, parallel=True),
    "streamed": tool_loop(stream=True, parallel=False),
    "required": required_call(),
    "legacy": legacy_functions(),
    "langchain": langchain_loop(),
}))
