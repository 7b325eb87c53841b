//! Job-scoped, short-lived tokens for SSE in browsers (`EventSource` cannot send headers).
//!
//! A token is `<expiry unix seconds>.<minter>.<hex HMAC-SHA256(secret, "innerloop-sse:" job_id "."
//! expiry "." minter)>`, where `minter` is the principal id of the caller it was issued to: a
//! stream opened with it counts against that caller's stream cap and rate limit, so minting
//! tokens gets no one around them. It is issued to an authenticated caller (the edge adds it to the create response as
//! `stream_token`, or serves it from `POST /v1/optimize/{id}/stream-token`, by calling
//! [`StreamTokens::issue`]) and accepted only as `?access_token=` on the events route of that
//! job, until it expires (`STREAM_TOKEN_TTL_S`). The secret is `STREAM_TOKEN_KEY`, or random
//! per process when unset (tokens then stop working on restart, which only costs a re-issue).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What the stream tokens read of the configuration (no `Debug`: it holds the key).
#[derive(Clone, PartialEq)]
pub struct StreamTokenConfig {
    /// The HMAC key (`STREAM_TOKEN_KEY`); unset or empty = a random one per process.
    pub key: Option<String>,
    /// Lifetime of a token (`STREAM_TOKEN_TTL_S`).
    pub ttl_s: u64,
}

/// Issues and verifies stream tokens.
#[derive(Clone)]
pub struct StreamTokens {
    secret: Vec<u8>,
    ttl_s: u64,
}

impl std::fmt::Debug for StreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTokens")
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

/// A freshly issued token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: u64,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl StreamTokens {
    pub fn new(secret: Vec<u8>, ttl_s: u64) -> StreamTokens {
        StreamTokens { secret, ttl_s }
    }

    /// Tokens under the configured key, or a random one when none is set.
    pub fn configured(config: &StreamTokenConfig) -> StreamTokens {
        let secret = match &config.key {
            Some(secret) if !secret.is_empty() => secret.as_bytes().to_vec(),
            _ => {
                let mut random = uuid::Uuid::new_v4().as_bytes().to_vec();
                random.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                random
            }
        };
        StreamTokens::new(secret, config.ttl_s)
    }

    fn mac(&self, job_id: &str, expiry: u64, minter: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts keys of any length");
        mac.update(b"innerloop-sse:");
        mac.update(job_id.as_bytes());
        mac.update(b".");
        mac.update(expiry.to_string().as_bytes());
        mac.update(b".");
        mac.update(minter.as_bytes());
        mac
    }

    /// A token for watching `job_id`, valid for the configured TTL, minted by the principal
    /// `minter` (its id, [`super::auth::principal_id`]).
    pub fn issue(&self, job_id: &str, minter: &str) -> IssuedToken {
        self.issue_at(job_id, minter, now_s())
    }

    fn issue_at(&self, job_id: &str, minter: &str, now: u64) -> IssuedToken {
        let expires_at = now.saturating_add(self.ttl_s);
        let tag = self.mac(job_id, expires_at, minter).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        IssuedToken {
            token: format!("{expires_at}.{minter}.{hex}"),
            expires_at,
        }
    }

    /// The id of the principal that minted `token`, when it was issued for `job_id` and has not
    /// expired. Constant time in the tag.
    pub fn verify(&self, job_id: &str, token: &str) -> Option<String> {
        self.verify_at(job_id, token, now_s())
    }

    fn verify_at(&self, job_id: &str, token: &str, now: u64) -> Option<String> {
        let mut parts = token.splitn(3, '.');
        let (expiry, minter, hex) = (parts.next()?, parts.next()?, parts.next()?);
        let expiry = expiry.parse::<u64>().ok()?;
        let minter_ok = !minter.is_empty()
            && minter.len() <= 64
            && minter.bytes().all(|b| b.is_ascii_hexdigit());
        if expiry < now || hex.len() != 64 || !minter_ok {
            return None;
        }
        let tag = (0..32)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        self.mac(job_id, expiry, minter)
            .verify_slice(&tag)
            .ok()
            .map(|()| minter.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_only_its_own_job_until_it_expires() {
        let tokens = StreamTokens::new(b"k".to_vec(), 60);
        let issued = tokens.issue_at("job-a", "abc123", 1000);
        assert_eq!(issued.expires_at, 1060);
        assert_eq!(
            tokens.verify_at("job-a", &issued.token, 1059).as_deref(),
            Some("abc123")
        );
        assert!(tokens.verify_at("job-b", &issued.token, 1059).is_none());
        assert!(tokens.verify_at("job-a", &issued.token, 1061).is_none());
    }

    #[test]
    fn forged_or_mangled_tokens_are_refused() {
        let tokens = StreamTokens::new(b"k".to_vec(), 60);
        let other = StreamTokens::new(b"other".to_vec(), 60);
        let issued = other.issue_at("job-a", "abc", 1000);
        assert!(tokens.verify_at("job-a", &issued.token, 1000).is_none());
        let mine = tokens.issue_at("job-a", "abc", 1000).token;
        let extended = mine.replacen("1060", "9999", 1);
        assert!(tokens.verify_at("job-a", &extended, 1000).is_none());
        // Claiming another minter breaks the tag.
        let reassigned = mine.replacen(".abc.", ".def.", 1);
        assert!(tokens.verify_at("job-a", &reassigned, 1000).is_none());
        for junk in [
            "",
            ".",
            "1060.",
            "x.y",
            "1060.zz",
            "1060.é",
            "1060..",
            "1060.abc.zz",
        ] {
            assert!(tokens.verify_at("job-a", junk, 1000).is_none());
        }
    }
}
