//! A model id with suffix parameters (`model:name=value&…`): parsing never panics, and a parsed
//! id written back out parses to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::model_id::ModelId;

fuzz_target!(|text: &str| {
    let Ok(id) = ModelId::parse(text) else {
        return;
    };
    let mut written = id.model.clone();
    if !id.parameters.is_empty() {
        written.push(':');
        let parameters: Vec<String> = id
            .parameters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        written.push_str(&parameters.join("&"));
    }
    if written.len() <= wire::model_id::MAX_MODEL_ID_BYTES {
        assert_eq!(ModelId::parse(&written).as_ref(), Ok(&id), "{written:?}");
    }
});
