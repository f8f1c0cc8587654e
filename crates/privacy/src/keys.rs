//! Oblivious HTTP key sets, as the gateway and every provider publish them.
//!
//! A key set is derived from secret input key material, so restarts (and replicas sharing the
//! material) publish the same keys. It always holds an X25519 key; with post-quantum sealing on
//! it also holds an X-Wing key (ML-KEM-768 combined with X25519, draft-connolly-cfrg-xwing-kem),
//! listed first so clients that can use it do, while clients that cannot still find the X25519
//! key after it. A sealed request names its key by id, and is opened with that key.

use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, Server, SymmetricSuite};
use sha2::{Digest, Sha256};

/// Label under which the X-Wing key's material is derived from the set's.
const X_WING_LABEL: &[u8] = b"gondola/ohttp-x-wing-key/v1";

/// The symmetric suites every key offers (the first is what clients pick).
fn suites() -> Vec<SymmetricSuite> {
    vec![
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::Aes128Gcm),
        SymmetricSuite::new(Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
    ]
}

/// The keys a gateway or provider opens sealed requests with, and their published list.
#[derive(Clone)]
pub struct KeySet {
    /// Each key's id and server, in the order published.
    servers: Vec<(u8, Server)>,
    encoded: Vec<u8>,
}

impl KeySet {
    /// The X25519 key `key_id` derived from `ikm` and, with `post_quantum`, the X-Wing key
    /// `key_id + 1` derived from it under its own label, listed first. The X25519 key is the
    /// same whether or not the X-Wing key is there, so turning post-quantum sealing on or off
    /// leaves clients that hold the X25519 key working.
    pub fn derive(key_id: u8, ikm: &[u8], post_quantum: bool) -> Result<Self, ohttp::Error> {
        let x25519 = KeyConfig::derive(key_id, Kem::X25519Sha256, suites(), ikm)?;
        let mut configs = Vec::with_capacity(2);
        if post_quantum {
            let mut material = Sha256::new();
            material.update(X_WING_LABEL);
            material.update(ikm);
            let x_wing = KeyConfig::derive(
                key_id.wrapping_add(1),
                Kem::XWing,
                suites(),
                &material.finalize(),
            )?;
            configs.push((key_id.wrapping_add(1), x_wing));
        }
        configs.push((key_id, x25519));
        let encoded =
            KeyConfig::encode_list(&configs.iter().map(|(_, config)| config).collect::<Vec<_>>())?;
        let servers = configs
            .into_iter()
            .map(|(id, config)| Ok((id, Server::new(config)?)))
            .collect::<Result<_, ohttp::Error>>()?;
        Ok(Self { servers, encoded })
    }

    /// The `application/ohttp-keys` list (RFC 9540).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The server that opens `sealed` (a request naming its key by id in its first byte), if
    /// the set has that key.
    pub fn server_for(&self, sealed: &[u8]) -> Option<Server> {
        let key_id = *sealed.first()?;
        self.servers
            .iter()
            .find(|(id, _)| *id == key_id)
            .map(|(_, server)| server.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::GatewayKeys;

    fn kems(keys: &KeySet) -> Vec<(u8, u16)> {
        // Each entry: a two-byte length, then the key id and the KEM id.
        let mut found = Vec::new();
        let list = keys.encoded();
        let mut at = 0;
        while at + 2 <= list.len() {
            let length = usize::from(u16::from_be_bytes([list[at], list[at + 1]]));
            let config = &list[at + 2..at + 2 + length];
            found.push((config[0], u16::from_be_bytes([config[1], config[2]])));
            at += 2 + length;
        }
        found
    }

    #[test]
    fn post_quantum_lists_x_wing_first_and_keeps_the_x25519_key() {
        let classic = KeySet::derive(1, &[7; 32], false).expect("keys");
        let hybrid = KeySet::derive(1, &[7; 32], true).expect("keys");
        assert_eq!(kems(&classic), [(1, 0x0020)]);
        assert_eq!(kems(&hybrid), [(2, 0x647a), (1, 0x0020)]);
        // The X25519 entry is the same bytes in both lists.
        assert!(hybrid.encoded().ends_with(classic.encoded()));
        // The same material gives the same keys; other material, others.
        assert_eq!(
            KeySet::derive(1, &[7; 32], true).expect("keys").encoded(),
            hybrid.encoded()
        );
        assert_ne!(
            KeySet::derive(1, &[8; 32], true).expect("keys").encoded(),
            hybrid.encoded()
        );
    }

    #[tokio::test]
    async fn a_client_seals_to_the_first_key_and_the_set_opens_it_with_that_key() {
        use futures_util::AsyncReadExt;

        for post_quantum in [false, true] {
            let keys = KeySet::derive(1, &[9; 32], post_quantum).expect("keys");
            let client = GatewayKeys::decode(keys.encoded()).expect("decodes");
            let (sealed, _opener) =
                crate::client::seal_chunked(&client, "POST", "/x", &[], b"hello")
                    .await
                    .expect("sealed");
            assert_eq!(sealed[0], if post_quantum { 2 } else { 1 });
            let mut request = keys
                .server_for(&sealed)
                .expect("a key of the set")
                .decapsulate_stream(&sealed[..]);
            let mut plaintext = Vec::new();
            request.read_to_end(&mut plaintext).await.expect("opens");
            let message = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plaintext[..]))
                .expect("bhttp");
            assert_eq!(message.content(), b"hello");
            // A request naming a key the set lacks finds no server.
            let mut unknown = sealed.clone();
            unknown[0] = 9;
            assert!(keys.server_for(&unknown).is_none());
        }
    }
}
