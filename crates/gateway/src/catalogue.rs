//! The model catalogue: which model a request means (an id, a trait such as `default`, or an
//! alias such as `gpt-4o-mini`), what it costs, and the `/models` listing. Models come from the
//! adverts of live providers; prices, traits and aliases from the operator's configuration.

use std::collections::{BTreeMap, HashMap};

use wire::models::{
    Capabilities, Constraints, DefaultValue, Model, ModelSpec, ModelType, Price, Pricing, Steps,
};
use wire::provider::ModelAdvert;

use crate::config::{CatalogueConfig, ModelPricing};

/// Traits every catalogue answers, pointing at the default model unless configured otherwise.
const BUILT_IN_TRAITS: &[&str] = &[
    "default",
    "fastest",
    "default_code",
    "default_reasoning",
    "most_uncensored",
    "most_intelligent",
];
/// OpenAI model names that generic clients send; they run on the default model.
const BUILT_IN_ALIASES: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "o4-mini",
];

/// Embedding model names that OpenAI and Venice clients send; they run on the default
/// embedding model.
const BUILT_IN_EMBEDDING_ALIASES: &[&str] = &[
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "text-embedding-bge-m3",
];

/// Speech model names that OpenAI and Venice clients send; they run on the default speech
/// model.
const BUILT_IN_SPEECH_ALIASES: &[&str] = &[
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "tts-kokoro",
    "tts-qwen3-0-6b",
    "tts-qwen3-1-7b",
    "tts-xai-v1",
    "tts-inworld-1-5-max",
    "tts-chatterbox-hd",
    "tts-orpheus",
    "tts-elevenlabs-turbo-v2-5",
    "tts-minimax-speech-02-hd",
    "tts-gemini-3-1-flash",
    "tts-gradium-v1",
];

/// Transcription model names that OpenAI and Venice clients send; they run on the default
/// transcription model.
const BUILT_IN_TRANSCRIPTION_ALIASES: &[&str] = &[
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "openai/whisper-large-v3",
    "nvidia/parakeet-tdt-0.6b-v3",
    "fal-ai/wizper",
    "elevenlabs/scribe-v2",
    "stt-xai-v1",
];

/// Image model names that OpenAI's clients send (and Venice's default); they run on the
/// default image model.
const BUILT_IN_IMAGE_ALIASES: &[&str] = &[
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1-mini",
    "grok-imagine-image",
];

/// Matches the engine's sampling defaults.
const DEFAULT_TEMPERATURE: f32 = 0.7;
const DEFAULT_TOP_P: f32 = 0.9;

/// Models served under live leases: id → (advert, number of providers).
pub type LiveModels = HashMap<String, (ModelAdvert, usize)>;

pub struct Catalogue {
    config: CatalogueConfig,
}

/// How a requested name was understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub model_id: String,
}

impl Catalogue {
    pub fn new(config: CatalogueConfig) -> Self {
        Self { config }
    }

    /// The model a trait or alias of `model_type` points at: the configured default (a text
    /// model), else the first live model of that type by id.
    fn default_model(&self, live: &LiveModels, model_type: ModelType) -> Option<String> {
        let configured = match model_type {
            ModelType::Text => self.config.default_model.clone(),
            ModelType::Embedding
            | ModelType::Tts
            | ModelType::Asr
            | ModelType::Image
            | ModelType::Video
            | ModelType::BackgroundRemoval
            | ModelType::Upscale => None,
        };
        configured.or_else(|| {
            live.iter()
                .filter(|(_, (advert, _))| advert.model_type == model_type)
                .map(|(id, _)| id)
                .min()
                .cloned()
        })
    }

    /// Trait → model id, configured ones over built-ins.
    pub fn traits(&self, live: &LiveModels) -> BTreeMap<String, String> {
        let mut traits = BTreeMap::new();
        if let Some(default) = self.default_model(live, ModelType::Text) {
            for name in BUILT_IN_TRAITS {
                traits.insert((*name).to_owned(), default.clone());
            }
        }
        traits.extend(self.config.traits.clone());
        traits
    }

    /// Alias → model id, configured ones over built-ins.
    pub fn aliases(&self, live: &LiveModels) -> BTreeMap<String, String> {
        let mut aliases = BTreeMap::new();
        if let Some(default) = self.default_model(live, ModelType::Text) {
            for name in BUILT_IN_ALIASES {
                aliases.insert((*name).to_owned(), default.clone());
            }
        }
        if let Some(default) = self.default_model(live, ModelType::Embedding) {
            for name in BUILT_IN_EMBEDDING_ALIASES {
                aliases.insert((*name).to_owned(), default.clone());
            }
        }
        if let Some(default) = self.default_model(live, ModelType::Tts) {
            for name in BUILT_IN_SPEECH_ALIASES {
                aliases.insert((*name).to_owned(), default.clone());
            }
        }
        if let Some(default) = self.default_model(live, ModelType::Asr) {
            for name in BUILT_IN_TRANSCRIPTION_ALIASES {
                aliases.insert((*name).to_owned(), default.clone());
            }
        }
        if let Some(default) = self.default_model(live, ModelType::Image) {
            for name in BUILT_IN_IMAGE_ALIASES {
                aliases.insert((*name).to_owned(), default.clone());
            }
        }
        aliases.extend(self.config.aliases.clone());
        aliases
    }

    /// The traits that name models of `model_type`: the text models' (built in and
    /// configured), or `default` for the first model of another type.
    pub fn traits_of(&self, live: &LiveModels, model_type: ModelType) -> BTreeMap<String, String> {
        match model_type {
            ModelType::Text => self.traits(live),
            other => self
                .default_model(live, other)
                .map(|default| BTreeMap::from([("default".to_owned(), default)]))
                .unwrap_or_default(),
        }
    }

    /// The aliases that name models of `model_type` (configured ones name text models unless
    /// their model is served as another type).
    pub fn aliases_of(&self, live: &LiveModels, model_type: ModelType) -> BTreeMap<String, String> {
        let type_of = |id: &str| {
            live.get(id)
                .map_or(ModelType::Text, |(advert, _)| advert.model_type)
        };
        self.aliases(live)
            .into_iter()
            .filter(|(_, id)| type_of(id) == model_type)
            .collect()
    }

    /// As [`Self::resolve_for`] for a text model.
    pub fn resolve(&self, requested: &str, live: &LiveModels) -> Option<Resolved> {
        self.resolve_for(requested, live, ModelType::Text)
    }

    /// The model id a requested name refers to, if any, for a request that wants a model of
    /// `model_type`: a served id first, then a trait of that type (`default` is the default
    /// embedding model for an embedding request), then an alias. A configured but currently
    /// unserved id still resolves (it is offline, not unknown).
    pub fn resolve_for(
        &self,
        requested: &str,
        live: &LiveModels,
        model_type: ModelType,
    ) -> Option<Resolved> {
        let known = |id: &str| {
            live.contains_key(id)
                || self.config.pricing.contains_key(id)
                || self.config.default_model.as_deref() == Some(id)
        };
        if known(requested) {
            return Some(Resolved {
                model_id: requested.to_owned(),
            });
        }
        self.traits_of(live, model_type)
            .get(requested)
            .cloned()
            .or_else(|| self.aliases(live).get(requested).cloned())
            .map(|model_id| Resolved { model_id })
    }

    pub fn pricing(&self, model_id: &str) -> ModelPricing {
        self.config
            .pricing
            .get(model_id)
            .copied()
            .unwrap_or(self.config.default_pricing)
    }

    /// The `/models` listing: live models, plus configured ones that are offline (taken as
    /// text models), of type `only` (every type when `None`); `max_output_tokens` is the
    /// gateway's bound on a reply.
    pub fn list(
        &self,
        live: &LiveModels,
        created: u64,
        max_output_tokens: u32,
        only: Option<ModelType>,
    ) -> Vec<Model> {
        let traits = self.traits(live);
        let mut ids: Vec<String> = live.keys().cloned().collect();
        ids.extend(
            self.config
                .pricing
                .keys()
                .filter(|id| !live.contains_key(*id))
                .cloned(),
        );
        ids.sort();
        ids.dedup();
        let type_of = |id: &str| {
            live.get(id)
                .map_or(ModelType::Text, |(advert, _)| advert.model_type)
        };
        ids.retain(|id| only.is_none_or(|only| type_of(id) == only));
        ids.into_iter()
            .map(|id| {
                let (advert, providers) = live.get(&id).map_or((None, 0), |(advert, count)| (Some(advert), *count));
                let pricing = self.pricing(&id);
                let model_traits = traits.iter().filter(|(_, target)| **target == id).map(|(name, _)| name.clone()).collect();
                let context = advert.map_or(0, |advert| advert.context_tokens);
                let takes = |kind: &str| advert.is_some_and(|advert| advert.input_media.iter().any(|known| known == kind));
                Model {
                    id: id.clone(),
                    object: "model",
                    r#type: type_of(&id).as_str(),
                    owned_by: "gondola".into(),
                    created,
                    context_length: context,
                    model_spec: ModelSpec {
                        name: advert.map_or_else(|| id.clone(), |advert| advert.name.clone()),
                        description: advert.map_or_else(
                            || "Configured on this gateway; no provider serves it right now.".to_owned(),
                            |advert| match advert.model_type {
                                ModelType::Tts => format!("Speech in the voice(s) {}, served by independent provider nodes.", advert.voices.join(", ")),
                                _ => format!("{} parameters, {} quantization, served by independent provider nodes.", human_parameters(advert.parameters), advert.quantization),
                            },
                        ),
                        model_source: advert.map_or_else(String::new, |advert| advert.backend.clone()),
                        offline: providers == 0,
                        privacy: "private",
                        traits: model_traits,
                        capabilities: Capabilities {
                            optimized_for_code: false,
                            quantization: wire::models::venice_quantization(advert.map_or("", |advert| advert.quantization.as_str())).to_owned(),
                            supports_function_calling: advert.is_some_and(|advert| advert.supports_function_calling),
                            supports_reasoning: advert.is_some_and(|advert| advert.supports_reasoning),
                            supports_vision: takes("image"),
                            supports_response_schema: advert.is_some_and(|advert| advert.supports_response_schema),
                            supports_log_probs: advert.is_some_and(|advert| advert.supports_logprobs),
                            supports_web_search: false,
                            supports_e2ee: false,
                            supports_tee_attestation: false,
                            supports_audio_input: takes("audio"),
                            supports_video_input: takes("video"),
                            supports_multiple_images: takes("image"),
                            supports_reasoning_effort: false,
                            supports_x_search: false,
                        },
                        constraints: match advert.and_then(|advert| advert.image) {
                            Some(limits) => Constraints::Image {
                                prompt_character_limit: wire::images::MAX_PROMPT_CHARS as u32,
                                steps: Steps { default: limits.default_steps, max: limits.max_steps },
                                width_height_divisor: limits.divisor,
                            },
                            None => Constraints::Text {
                                temperature: DefaultValue { default: DEFAULT_TEMPERATURE },
                                top_p: DefaultValue { default: DEFAULT_TOP_P },
                            },
                        },
                        pricing: match type_of(&id) {
                            ModelType::Image | ModelType::BackgroundRemoval | ModelType::Upscale => Pricing::Image { generation: Price::usd(pricing.per_image) },
                            ModelType::Video => Pricing::Video { per_second: Price::usd(pricing.per_video_second) },
                            _ => Pricing::Tokens { input: Price::usd(pricing.input_per_million), output: Price::usd(pricing.output_per_million), cache_input: Price::usd(pricing.cache_input_per_million) },
                        },
                        available_context_tokens: context,
                        max_completion_tokens: max_output_tokens.min(context),
                        providers,
                        voices: advert
                            .filter(|advert| advert.model_type == ModelType::Tts)
                            .map(|advert| advert.voices.clone()),
                    },
                }
            })
            .collect()
    }
}

fn human_parameters(parameters: u64) -> String {
    match parameters {
        0 => "an unknown number of".to_owned(),
        p if p >= 1_000_000_000 => format!("{:.1}B", p as f64 / 1e9),
        p => format!("{}M", p / 1_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(ids: &[&str]) -> HashMap<String, (ModelAdvert, usize)> {
        ids.iter()
            .map(|id| {
                let advert = ModelAdvert {
                    model_type: wire::models::ModelType::Text,
                    id: (*id).into(),
                    name: (*id).into(),
                    context_tokens: 2048,
                    quantization: "Q4_1".into(),
                    parameters: 134_515_008,
                    supports_response_schema: true,
                    supports_reasoning: false,
                    supports_function_calling: true,
                    supports_logprobs: true,
                    input_media: Vec::new(),
                    backend: "embedded".into(),
                    voices: Vec::new(),
                    image: None,
                    video: None,
                };
                ((*id).to_owned(), (advert, 1))
            })
            .collect()
    }

    #[test]
    fn each_type_has_its_own_default_traits_and_aliases() {
        let catalogue = Catalogue::new(CatalogueConfig::default());
        let mut live = live(&["chat"]);
        let mut vectors = live["chat"].0.clone();
        vectors.id = "vectors".into();
        vectors.model_type = ModelType::Embedding;
        live.insert("vectors".into(), (vectors, 1));
        let resolve = |name: &str, model_type| {
            catalogue
                .resolve_for(name, &live, model_type)
                .map(|resolved| resolved.model_id)
        };
        assert_eq!(resolve("default", ModelType::Text).as_deref(), Some("chat"));
        assert_eq!(
            resolve("default", ModelType::Embedding).as_deref(),
            Some("vectors")
        );
        assert_eq!(
            resolve("text-embedding-3-small", ModelType::Embedding).as_deref(),
            Some("vectors")
        );
        assert_eq!(resolve("tts-1", ModelType::Tts), None, "no voice is served");
        let aliases = catalogue.aliases_of(&live, ModelType::Embedding);
        assert!(aliases.contains_key("text-embedding-ada-002"));
        assert!(!aliases.contains_key("gpt-4o"));
        assert_eq!(
            catalogue.traits_of(&live, ModelType::Embedding),
            BTreeMap::from([("default".to_owned(), "vectors".to_owned())])
        );
        let listed: Vec<String> = catalogue
            .list(&live, 0, 4096, Some(ModelType::Embedding))
            .into_iter()
            .map(|model| model.id)
            .collect();
        assert_eq!(listed, vec!["vectors".to_owned()]);
    }

    #[test]
    fn ids_traits_and_aliases_resolve_to_served_models() {
        let mut config = CatalogueConfig::default();
        config.traits.insert("fastest".into(), "small".into());
        let catalogue = Catalogue::new(config);
        let live = live(&["big", "small"]);
        let resolve = |name: &str| {
            catalogue
                .resolve(name, &live)
                .map(|resolved| resolved.model_id)
        };
        assert_eq!(resolve("big").as_deref(), Some("big"));
        assert_eq!(resolve("default").as_deref(), Some("big"), "first by id");
        assert_eq!(
            resolve("fastest").as_deref(),
            Some("small"),
            "configured trait"
        );
        assert_eq!(resolve("gpt-4o-mini").as_deref(), Some("big"));
        assert_eq!(resolve("nonexistent"), None);
    }

    #[test]
    fn the_listing_marks_configured_models_without_providers_offline() {
        let mut config = CatalogueConfig::default();
        config
            .pricing
            .insert("resting".into(), ModelPricing::default());
        let catalogue = Catalogue::new(config);
        let models = catalogue.list(&live(&["small"]), 0, 4096, None);
        let offline: Vec<(&str, bool)> = models
            .iter()
            .map(|model| (model.id.as_str(), model.model_spec.offline))
            .collect();
        assert_eq!(offline, vec![("resting", true), ("small", false)]);
        assert!(models[1].model_spec.traits.contains(&"default".to_owned()));
    }
}
