//! Model ids with parameters: `<model>:<param>=<value>&<param2>=<value2>`, as Venice accepts
//! (e.g. `default:strip_thinking_response=true`). The suffix carries `venice_parameters`.

/// A model id split into the model and its suffix parameters, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub model: String,
    pub parameters: Vec<(String, String)>,
}

/// Longest model id accepted; ids are looked up in a catalogue, so anything longer is an error.
pub const MAX_MODEL_ID_BYTES: usize = 256;
/// Parameters a suffix may carry: there are fewer than this many `venice_parameters` in all.
pub const MAX_SUFFIX_PARAMETERS: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelIdError {
    #[error("model must not be empty")]
    Empty,
    #[error("model id is longer than {MAX_MODEL_ID_BYTES} bytes")]
    TooLong,
    #[error("model suffix parameter {0:?} must have the form name=value")]
    MalformedParameter(String),
    #[error("model suffix carries more than {MAX_SUFFIX_PARAMETERS} parameters")]
    TooManyParameters,
}

impl ModelId {
    pub fn parse(text: &str) -> Result<Self, ModelIdError> {
        if text.len() > MAX_MODEL_ID_BYTES {
            return Err(ModelIdError::TooLong);
        }
        let (model, suffix) = match text.split_once(':') {
            Some((model, suffix)) => (model.trim(), Some(suffix)),
            None => (text.trim(), None),
        };
        if model.is_empty() {
            return Err(ModelIdError::Empty);
        }
        let mut parameters = Vec::new();
        for part in suffix
            .into_iter()
            .flat_map(|suffix| suffix.split('&'))
            .filter(|part| !part.is_empty())
        {
            let (name, value) = part
                .split_once('=')
                .filter(|(name, _)| !name.trim().is_empty())
                .ok_or_else(|| ModelIdError::MalformedParameter(part.to_owned()))?;
            if parameters.len() == MAX_SUFFIX_PARAMETERS {
                return Err(ModelIdError::TooManyParameters);
            }
            parameters.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        Ok(Self {
            model: model.to_owned(),
            parameters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_model_and_parameters() {
        let id = ModelId::parse("default:strip_thinking_response=true&disable_thinking=false")
            .expect("valid");
        assert_eq!(id.model, "default");
        assert_eq!(
            id.parameters,
            vec![
                ("strip_thinking_response".to_owned(), "true".to_owned()),
                ("disable_thinking".to_owned(), "false".to_owned())
            ]
        );
        assert_eq!(ModelId::parse("plain").expect("valid").parameters, vec![]);
        assert_eq!(ModelId::parse("m:").expect("valid").parameters, vec![]);
    }

    #[test]
    fn rejects_malformed_ids() {
        assert_eq!(ModelId::parse(""), Err(ModelIdError::Empty));
        assert_eq!(ModelId::parse(":a=b"), Err(ModelIdError::Empty));
        assert_eq!(
            ModelId::parse("m:flag"),
            Err(ModelIdError::MalformedParameter("flag".into()))
        );
        assert_eq!(
            ModelId::parse("m:=x"),
            Err(ModelIdError::MalformedParameter("=x".into()))
        );
        assert_eq!(ModelId::parse(&"m".repeat(300)), Err(ModelIdError::TooLong));
        let many = (0..20)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            ModelId::parse(&format!("m:{many}")),
            Err(ModelIdError::TooManyParameters)
        );
    }
}
