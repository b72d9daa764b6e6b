//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side.
//!
//! The exchange is two messages each way over SaslAuthenticate: the
//! client's first message (user name and nonce), the server's first
//! (combined nonce, salt, iterations), the client's final (proof), the
//! server's final (its own signature). [`ScramServer`] is pure: it sees the
//! credentials it is given and the bytes of each message, nothing else.
//!
//! Built from the RustCrypto primitives (HMAC, SHA-2, PBKDF2): no
//! maintained crate with a permissive licence serves both SHA-256 and
//! SHA-512 on the server side (`docs/security.md`).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use kraftwerk_metadata::ScramCredential;
use sha2::{Digest, Sha256, Sha512};

/// Kafka's bounds on a SCRAM credential's iteration count.
pub const MIN_ITERATIONS: i32 = 4096;
pub const MAX_ITERATIONS: i32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        match name {
            "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    /// AlterUserScramCredentials numbers them 1 and 2.
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac =
                    Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The stored credential for a salted password (what
    /// AlterUserScramCredentials carries): StoredKey and ServerKey.
    pub fn credential(
        self,
        salt: &[u8],
        salted_password: &[u8],
        iterations: i32,
    ) -> ScramCredential {
        let client_key = self.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: self.hash(&client_key),
            server_key: self.hmac(salted_password, b"Server Key"),
            iterations,
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

/// Why an exchange failed. Every variant is SASL_AUTHENTICATION_FAILED to
/// the client; the text is for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

enum Stage {
    ClientFirst,
    ClientFinal {
        user: String,
        credential: ScramCredential,
        /// Unknown user: the exchange runs to the end on a made-up
        /// credential, so a reply never tells which user names exist.
        known: bool,
        nonce: String,
        client_first_bare: String,
        server_first: String,
    },
    Done,
}

/// One SCRAM exchange on one connection.
pub struct ScramServer {
    mechanism: ScramMechanism,
    stage: Stage,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        ScramServer {
            mechanism,
            stage: Stage::ClientFirst,
        }
    }

    /// The client's first message; `lookup` finds a user's credential for
    /// this mechanism, `server_nonce` is fresh randomness (printable, no
    /// comma). Returns the server's first message.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.stage, Stage::ClientFirst) {
            return Err(ScramError::OutOfOrder);
        }
        self.stage = Stage::Done;
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: "n" (no channel binding), then an optional authzid.
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts
            .next()
            .ok_or(ScramError::Malformed("no client-first-bare"))?;
        if cbind != "n" && cbind != "y" {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        let mut user = None;
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if let Some(v) = attr.strip_prefix("n=") {
                user = Some(decode_saslname(v)?);
            } else if let Some(v) = attr.strip_prefix("r=") {
                client_nonce = Some(v.to_string());
            } else if attr.starts_with("m=") {
                return Err(ScramError::Malformed("mandatory extension not supported"));
            }
            // Other extensions (Kafka's tokenauth) are ignored: only
            // stored user credentials are accepted.
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = client_nonce.ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() || user.is_empty() {
            return Err(ScramError::Malformed("empty user name or nonce"));
        }
        if let Some(a) = authzid.strip_prefix("a=") {
            if decode_saslname(a)? != user {
                return Err(ScramError::InvalidCredentials);
            }
        }
        let (credential, known) = match lookup(&user) {
            Some(c) => (c, true),
            None => (self.decoy(&user, server_nonce), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        self.stage = Stage::ClientFinal {
            user,
            credential,
            known,
            nonce,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
        };
        Ok(server_first.into_bytes())
    }

    /// The client's final message. On success returns the user name and
    /// the server's final message.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let Stage::ClientFinal {
            user,
            credential,
            known,
            nonce,
            client_first_bare,
            server_first,
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut final_nonce = None;
        for attr in without_proof.split(',') {
            if let Some(v) = attr.strip_prefix("c=") {
                channel = Some(v);
            } else if let Some(v) = attr.strip_prefix("r=") {
                final_nonce = Some(v);
            }
        }
        let channel = B64
            .decode(channel.ok_or(ScramError::Malformed("no channel binding"))?)
            .map_err(|_| ScramError::Malformed("channel binding is not base64"))?;
        if !(channel.starts_with(b"n,") || channel.starts_with(b"y,")) {
            return Err(ScramError::Malformed("channel binding is not supported"));
        }
        if final_nonce != Some(nonce.as_str()) {
            return Err(ScramError::InvalidCredentials);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self
            .mechanism
            .hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::InvalidCredentials);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let computed = self.mechanism.hash(&client_key);
        if !known || !constant_time_eq(&computed, &credential.stored_key) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = self
            .mechanism
            .hmac(&credential.server_key, auth_message.as_bytes());
        Ok((
            user,
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }

    /// A credential for a user that does not exist: its salt depends on
    /// the name only within this exchange, its keys match no password.
    fn decoy(&self, user: &str, server_nonce: &str) -> ScramCredential {
        let salt = self
            .mechanism
            .hmac(server_nonce.as_bytes(), user.as_bytes());
        let key = self.mechanism.hmac(&salt, b"no such user");
        ScramCredential {
            salt: salt[..16].to_vec(),
            stored_key: self.mechanism.hash(&key),
            server_key: key,
            iterations: MIN_ITERATIONS,
        }
    }
}

/// `=2C` and `=3D` stand for `,` and `=` in a SCRAM user name.
fn decode_saslname(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc_7677_exchange() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let credential = m.credential(&salt, &salted, 4096);
        let mut server = ScramServer::new(m);
        let first = server
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u| (u == "user").then(|| credential.clone()),
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            )
            .expect("first");
        assert_eq!(
            String::from_utf8_lossy(&first),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, last) = server
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("final");
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8_lossy(&last),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn wrong_proof_unknown_user_and_replays_fail() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let credential = m.credential(&salt, &m.salted_password(b"pencil", &salt, 4096), 4096);
        let nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let good_final: &[u8] = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

        // A flipped bit in the proof.
        let mut server = ScramServer::new(m);
        server
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |_| Some(credential.clone()),
                nonce,
            )
            .expect("first");
        let bad = String::from_utf8_lossy(good_final).replace("p=dHz", "p=dHy");
        assert_eq!(
            server.client_final(bad.as_bytes()),
            Err(ScramError::InvalidCredentials)
        );

        // An unknown user gets a server-first message too, then fails.
        let mut server = ScramServer::new(m);
        let first = server
            .client_first(b"n,,n=mallory,r=abc", |_| None, nonce)
            .expect("decoy first");
        assert!(String::from_utf8_lossy(&first).starts_with("r=abc"));
        assert!(server.client_final(b"c=biws,r=abc,p=AAAA").is_err());

        // The final message before the first one.
        let mut server = ScramServer::new(m);
        assert_eq!(server.client_final(good_final), Err(ScramError::OutOfOrder));

        // A different authzid than the user.
        let mut server = ScramServer::new(m);
        assert_eq!(
            server.client_first(b"n,a=admin,n=user,r=x", |_| Some(credential.clone()), nonce),
            Err(ScramError::InvalidCredentials)
        );
    }

    #[test]
    fn sha512_round_trip_and_escaped_names() {
        let m = ScramMechanism::Sha512;
        let salt = b"0123456789abcdef".to_vec();
        let salted = m.salted_password(b"s3cret", &salt, 4096);
        let credential = m.credential(&salt, &salted, 4096);
        let mut server = ScramServer::new(m);
        let first = server
            .client_first(
                b"n,,n=a=2Cb=3Dc,r=cnonce",
                |u| (u == "a,b=c").then(|| credential.clone()),
                "snonce",
            )
            .expect("first");
        assert_eq!(
            String::from_utf8_lossy(&first),
            format!("r=cnoncesnonce,s={},i=4096", B64.encode(&salt))
        );
        // The client's side, computed the way RFC 5802 describes it.
        let without_proof = "c=biws,r=cnoncesnonce";
        let auth = format!(
            "n=a=2Cb=3Dc,r=cnonce,{},{without_proof}",
            String::from_utf8_lossy(&first)
        );
        let client_key = m.hmac(&salted, b"Client Key");
        let signature = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let (user, last) = server
            .client_final(format!("{without_proof},p={}", B64.encode(proof)).as_bytes())
            .expect("final");
        assert_eq!(user, "a,b=c");
        let expected = m.hmac(&m.hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(last, format!("v={}", B64.encode(expected)).into_bytes());
    }
}
