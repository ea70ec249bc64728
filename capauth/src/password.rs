//! Password hashing with argon2id; parameters come from [`PasswordConfig`].

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use capcore::{Error, Result};

/// argon2id cost parameters. The defaults follow OWASP's minimum (19 MiB, 2 passes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

impl PasswordConfig {
    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| Error::invalid("auth.password", format!("bad argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes `password` into a PHC string.
    pub fn hash(&self, password: &str) -> Result<String> {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| Error::internal("cannot encode salt", e.to_string()))?;
        Ok(self
            .argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::internal("cannot hash password", e.to_string()))?
            .to_string())
    }
}

/// Checks `password` against a PHC string; the parameters stored in the hash are used.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let cfg = PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1 };
        let h = cfg.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("wrong horse", &h));
        assert!(!verify("correct horse", "not a hash"));
        assert_ne!(cfg.hash("correct horse").unwrap(), h, "salted");
    }

    #[test]
    fn bad_parameters_name_the_key() {
        let cfg = PasswordConfig { memory_kib: 1, iterations: 0, parallelism: 1 };
        let e = cfg.hash("x").unwrap_err();
        assert!(e.to_string().starts_with("auth.password: bad argon2 parameters"), "{e}");
    }
}
