//! Access tokens (JWT, HS256), refresh tokens and API-key secrets: making and checking them.

use capcore::ids::{SessionId, UserId};
use capcore::{Error, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: UserId,
    /// The session (refresh-token family).
    pub sid: SessionId,
    /// The CSRF token bound to this session.
    pub csrf: String,
    /// Issued at and expiry, Unix seconds.
    pub iat: i64,
    pub exp: i64,
}

/// Signs and verifies access tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// `secret` must be at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < 32 {
            return Err(Error::invalid("auth.jwt_secret", "must be at least 32 bytes"));
        }
        Ok(Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret) })
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| Error::internal("cannot sign token", e))
    }

    /// Verifies signature, algorithm and expiry against `now_secs` (no leeway).
    pub fn verify(&self, token: &str, now_secs: i64) -> Result<AccessClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the caller's clock, so tests can move time.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|_| Error::unauthorized("the access token is invalid"))?;
        if data.claims.exp <= now_secs {
            return Err(Error::unauthorized("the access token has expired"));
        }
        Ok(data.claims)
    }
}

/// `n` random bytes as unpadded base64url.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// SHA-256 hex of a high-entropy secret (refresh tokens, API keys, node tokens). Such secrets
/// need no slow hash: they cannot be guessed, only stolen, and the hash keeps a stolen table
/// useless.
pub fn secret_hash(secret: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
}

/// Constant-time string comparison.
pub fn same(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            sub: UserId(Uuid::from_u128(1)),
            sid: SessionId(Uuid::from_u128(2)),
            csrf: "c".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn sign_verify_expire_forge() {
        let signer = TokenSigner::new(&[7u8; 32]).unwrap();
        let t = signer.sign(&claims(100)).unwrap();
        assert_eq!(signer.verify(&t, 99).unwrap(), claims(100));
        assert_eq!(signer.verify(&t, 100).unwrap_err().to_string(), "the access token has expired");
        let other = TokenSigner::new(&[8u8; 32]).unwrap();
        assert_eq!(other.verify(&t, 0).unwrap_err().to_string(), "the access token is invalid");
        // A token with `alg: none` is refused.
        let parts: Vec<&str> = t.split('.').collect();
        let none_header = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(signer.verify(&format!("{none_header}.{}.", parts[1]), 0).is_err());
        assert!(TokenSigner::new(b"short").is_err());
    }

    #[test]
    fn hashes_and_tokens() {
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(random_token(32).len(), 43);
        assert_ne!(random_token(32), random_token(32));
        assert!(same("a", "a") && !same("a", "b"));
    }
}
