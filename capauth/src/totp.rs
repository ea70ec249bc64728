//! TOTP (RFC 6238, HMAC-SHA1, 30 s steps, 6 digits), the codes of every authenticator app.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECS: i64 = 30;
pub const DIGITS: u32 = 6;

/// A new random 160-bit secret, base32 without padding.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    rand::fill(&mut bytes);
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

/// The code for time step `step` (RFC 4226 HOTP over the step counter).
pub fn code_at_step(secret: &[u8], step: i64, digits: u32) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = (hash[hash.len() - 1] & 0x0f) as usize;
    let bin = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:0width$}", bin % 10u32.pow(digits), width = digits as usize)
}

/// The step a code matched within ±1 step of `unix_secs`, if any.
pub fn verify(secret_base32: &str, code: &str, unix_secs: i64) -> Option<i64> {
    let secret = data_encoding::BASE32_NOPAD.decode(secret_base32.as_bytes()).ok()?;
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = unix_secs.div_euclid(STEP_SECS);
    (now - 1..=now + 1).find(|&step| {
        subtle::ConstantTimeEq::ct_eq(code_at_step(&secret, step, DIGITS).as_bytes(), code.as_bytes()).into()
    })
}

/// The `otpauth://` URI that authenticator apps read from a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    format!(
        "otpauth://totp/{}:{}?secret={secret_base32}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        enc(issuer),
        enc(account),
        enc(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA1 column (8 digits, secret "12345678901234567890").
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at_step(secret, t / STEP_SECS, 8), expected, "t={t}");
        }
    }

    #[test]
    fn verify_window_and_format() {
        let secret = new_secret();
        let raw = data_encoding::BASE32_NOPAD.decode(secret.as_bytes()).unwrap();
        let now = 1_700_000_000;
        let code = code_at_step(&raw, now / STEP_SECS, DIGITS);
        assert_eq!(verify(&secret, &code, now), Some(now / STEP_SECS));
        assert_eq!(verify(&secret, &code, now + STEP_SECS), Some(now / STEP_SECS), "one step late is accepted");
        assert_eq!(verify(&secret, &code, now + 3 * STEP_SECS), None, "three steps late is not");
        assert_eq!(verify(&secret, "12345", now), None);
        assert_eq!(verify(&secret, "abcdef", now), None);
        assert!(
            otpauth_uri("Ctrl Alt Play", "ada@example.org", &secret)
                .starts_with("otpauth://totp/Ctrl%20Alt%20Play:ada@example.org?secret=")
        );
    }
}
