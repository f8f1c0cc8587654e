//! A chat completion request body, as a client sends it: parsing never panics, and what parses
//! always becomes a provider request that encodes to JSON the provider can parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wire::chat::{ChatRequest, ProviderChatRequest};

fuzz_target!(|body: &[u8]| {
    if let Ok(request) = ChatRequest::parse(body) {
        let provider = ProviderChatRequest::from_chat(&request, &request.model, 64);
        let encoded = serde_json::to_vec(&provider).expect("a provider request encodes");
        serde_json::from_slice::<ProviderChatRequest>(&encoded).expect("and decodes again");
    }
});
