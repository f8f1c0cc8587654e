//! Characters: personas the operator defines in the configuration (a system prompt, and
//! optionally the model that plays them), listed at `GET /characters` in Venice's shape and
//! applied to a chat request that names one (`venice_parameters.character_slug`, or the model
//! suffix `:character_slug=…`).

use std::collections::BTreeMap;

use serde::Serialize;
use wire::economy::Timestamp;
use wire::error::{ApiError, ErrorCode};

/// Most characters one gateway lists.
pub const MAX_CHARACTERS: usize = 1000;
/// Longest character prompt.
pub const MAX_CHARACTER_PROMPT_BYTES: usize = 32 * 1024;

/// One character as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Character {
    /// `a-z`, `0-9` and `-`, 1 to 64: what requests name.
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    /// Put first in the conversation, as its system message.
    pub system_prompt: String,
    /// The model (id, trait or alias) that plays the character; `None` keeps the request's.
    pub model: Option<String>,
    pub tags: Vec<String>,
    pub adult: bool,
}

impl Character {
    /// Checks what a configuration gives; the error names the slug.
    pub fn check(&self) -> Result<(), String> {
        let slug_ok = !self.slug.is_empty()
            && self.slug.len() <= 64
            && self
                .slug
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if !slug_ok {
            return Err(format!(
                "character slug {:?} must be 1 to 64 of a-z, 0-9 and -",
                self.slug
            ));
        }
        if self.name.trim().is_empty() {
            return Err(format!("character {:?} needs a name", self.slug));
        }
        if self.system_prompt.trim().is_empty()
            || self.system_prompt.len() > MAX_CHARACTER_PROMPT_BYTES
        {
            return Err(format!(
                "character {:?}: system_prompt must be 1 to {MAX_CHARACTER_PROMPT_BYTES} bytes",
                self.slug
            ));
        }
        Ok(())
    }
}

/// The configured characters, by slug.
#[derive(Debug, Clone, Default)]
pub struct Characters {
    by_slug: BTreeMap<String, Character>,
    /// When this list was loaded: the characters' `createdAt` and `updatedAt`.
    loaded_at: u64,
}

impl Characters {
    pub fn new(characters: Vec<Character>, loaded_at: u64) -> Result<Self, String> {
        if characters.len() > MAX_CHARACTERS {
            return Err(format!("at most {MAX_CHARACTERS} characters"));
        }
        let mut by_slug = BTreeMap::new();
        for character in characters {
            character.check()?;
            if by_slug.contains_key(&character.slug) {
                return Err(format!("two characters have the slug {:?}", character.slug));
            }
            by_slug.insert(character.slug.clone(), character);
        }
        Ok(Self { by_slug, loaded_at })
    }

    /// The character a request names, or a 404 naming the slug.
    pub fn get(&self, slug: &str) -> Result<&Character, ApiError> {
        self.by_slug.get(slug).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!("no character {slug:?} here; GET /characters lists them"),
            )
            .with_param("character_slug")
        })
    }

    /// The characters `query` asks for, in Venice's shape.
    pub fn list(&self, query: &CharacterQuery) -> Result<Vec<CharacterView>, ApiError> {
        let limit = query.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid("limit", "limit is 1 to 100"));
        }
        let flag = |value: &Option<String>, param: &str| match value.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid(
                param,
                format!("{param} is true or false"),
            )),
        };
        let adult = flag(&query.is_adult, "isAdult")?;
        // No model here is a "pro" model, and no character searches the web.
        let pro = flag(&query.is_pro, "isPro")?;
        let web = flag(&query.is_web_enabled, "isWebEnabled")?;
        let wanted_tags: Vec<String> = query
            .tags
            .iter()
            .chain(&query.categories)
            .flat_map(|tags| tags.split(','))
            .map(|tag| tag.trim().to_lowercase())
            .filter(|tag| !tag.is_empty())
            .collect();
        let search = query.search.as_deref().map(str::to_lowercase);
        let matches = |character: &&Character| {
            adult.is_none_or(|adult| character.adult == adult)
                && pro != Some(true)
                && web != Some(true)
                && wanted_tags.iter().all(|wanted| {
                    character
                        .tags
                        .iter()
                        .any(|tag| tag.to_lowercase() == *wanted)
                })
                && search.as_deref().is_none_or(|search| {
                    character.name.to_lowercase().contains(search)
                        || character
                            .description
                            .as_deref()
                            .is_some_and(|text| text.to_lowercase().contains(search))
                })
                && (query.model_id.is_empty()
                    || character
                        .model
                        .as_ref()
                        .is_some_and(|model| query.model_id.contains(model)))
        };
        Ok(self
            .by_slug
            .values()
            .filter(matches)
            .skip(query.offset.unwrap_or(0))
            .take(limit)
            .map(|character| self.view(character))
            .collect())
    }

    pub fn view(&self, character: &Character) -> CharacterView {
        CharacterView {
            adult: character.adult,
            author: "operator".into(),
            created_at: Timestamp(self.loaded_at),
            description: character.description.clone(),
            featured: false,
            id: character.slug.clone(),
            name: character.name.clone(),
            share_url: None,
            photo_url: None,
            slug: character.slug.clone(),
            stats: CharacterStats::default(),
            tags: character.tags.clone(),
            updated_at: Timestamp(self.loaded_at),
            web_enabled: false,
            model_id: character.model.clone().unwrap_or_else(|| "default".into()),
        }
    }
}

/// `GET /characters` query, as Venice's API takes it (list parameters repeated or
/// comma-separated).
#[derive(Debug, Default)]
pub struct CharacterQuery {
    categories: Vec<String>,
    tags: Vec<String>,
    is_adult: Option<String>,
    is_pro: Option<String>,
    is_web_enabled: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
    model_id: Vec<String>,
    search: Option<String>,
}

impl CharacterQuery {
    /// Reads a query string; unknown parameters (`sortBy`, `sortOrder`: characters are listed
    /// by slug) are accepted and have no effect.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut parsed = Self::default();
        let count = |value: &str, param: &str| {
            value
                .parse::<usize>()
                .map_err(|_| ApiError::invalid(param, format!("{param} is a whole number")))
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let value = value.into_owned();
            match key.as_ref() {
                "categories" => parsed.categories.push(value),
                "tags" => parsed.tags.push(value),
                "modelId" => parsed.model_id.push(value),
                "isAdult" => parsed.is_adult = Some(value),
                "isPro" => parsed.is_pro = Some(value),
                "isWebEnabled" => parsed.is_web_enabled = Some(value),
                "limit" => parsed.limit = Some(count(&value, "limit")?),
                "offset" => parsed.offset = Some(count(&value, "offset")?),
                "search" => parsed.search = Some(value),
                _ => {}
            }
        }
        if parsed.categories.len() + parsed.tags.len() + parsed.model_id.len() > 60 {
            return Err(ApiError::invalid("tags", "at most 20 values of each list"));
        }
        Ok(parsed)
    }
}

/// A character in Venice's shape.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CharacterView {
    pub adult: bool,
    pub author: String,
    pub created_at: Timestamp,
    pub description: Option<String>,
    pub featured: bool,
    pub id: String,
    pub name: String,
    pub share_url: Option<String>,
    pub photo_url: Option<String>,
    pub slug: String,
    pub stats: CharacterStats,
    pub tags: Vec<String>,
    pub updated_at: Timestamp,
    pub web_enabled: bool,
    pub model_id: String,
}

/// Ratings and imports: none here.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CharacterStats {
    pub average_rating: u32,
    pub imports: u32,
    pub rating_count: u32,
    pub rating_sum: u32,
    pub user_rating: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn character(slug: &str, tags: &[&str], adult: bool) -> Character {
        Character {
            slug: slug.into(),
            name: format!("The {slug}"),
            description: Some(format!("A {slug} who talks like one")),
            system_prompt: format!("You are a {slug}."),
            model: None,
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
            adult,
        }
    }

    #[test]
    fn characters_are_checked_when_configured() {
        let bad = [
            Character {
                slug: "Has Space".into(),
                ..character("x", &[], false)
            },
            Character {
                system_prompt: " ".into(),
                ..character("x", &[], false)
            },
            Character {
                system_prompt: "x".repeat(MAX_CHARACTER_PROMPT_BYTES + 1),
                ..character("x", &[], false)
            },
        ];
        for character in bad {
            assert!(Characters::new(vec![character], 0).is_err());
        }
        assert!(
            Characters::new(
                vec![
                    character("pirate", &[], false),
                    character("pirate", &[], false)
                ],
                0
            )
            .is_err()
        );
    }

    #[test]
    fn the_list_filters_as_venices_query_asks() {
        let characters = Characters::new(
            vec![
                character("pirate", &["Roleplay", "sea"], false),
                character("poet", &["roleplay"], false),
                character("bouncer", &["nightlife"], true),
            ],
            1_796_601_600,
        )
        .expect("valid");
        let slugs = |query: CharacterQuery| -> Vec<String> {
            characters
                .list(&query)
                .expect("valid query")
                .into_iter()
                .map(|view| view.slug)
                .collect()
        };
        assert_eq!(
            slugs(CharacterQuery::default()),
            vec!["bouncer", "pirate", "poet"]
        );
        assert_eq!(
            slugs(CharacterQuery {
                tags: vec!["roleplay".into()],
                ..CharacterQuery::default()
            }),
            vec!["pirate", "poet"]
        );
        assert_eq!(
            slugs(CharacterQuery {
                categories: vec!["roleplay,sea".into()],
                ..CharacterQuery::default()
            }),
            vec!["pirate"]
        );
        assert_eq!(
            slugs(CharacterQuery {
                is_adult: Some("false".into()),
                search: Some("TALKS".into()),
                offset: Some(1),
                ..CharacterQuery::default()
            }),
            vec!["poet"]
        );
        assert!(
            slugs(CharacterQuery {
                is_pro: Some("true".into()),
                ..CharacterQuery::default()
            })
            .is_empty()
        );
        let error = characters
            .list(&CharacterQuery {
                limit: Some(0),
                ..CharacterQuery::default()
            })
            .expect_err("bounded");
        assert_eq!(error.param.as_deref(), Some("limit"));
        assert_eq!(characters.get("ghost").expect_err("unknown").status(), 404);
        let view = characters.view(characters.get("pirate").expect("known"));
        assert_eq!(view.model_id, "default");
        assert_eq!(view.created_at.to_iso(), "2026-12-07T00:00:00.000Z");
    }
}
