//! Sealing Secret values with age (X25519), as Bitnami's sealed-secrets and SOPS do: anyone may seal
//! to the operator's published recipients, only the operator's identity opens a value. A sealed
//! value is ASCII-armoured (`-----BEGIN AGE ENCRYPTED FILE-----`), safe in Git and in etcd.
//!
//! Pure: reading the identity file is the caller's (`Keyring::load` takes its text), and no value
//! or identity ever reaches a log, an error or a `Debug` output.

use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;

/// Why sealing or opening failed; never quotes a value or an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("{0}: not an age recipient (age1…)")]
    BadRecipient(String),
    #[error("line {0}: not an age identity (AGE-SECRET-KEY-1…)")]
    BadIdentity(usize),
    #[error("the identity file holds no identity")]
    NoIdentity,
    #[error("no recipient to seal to")]
    NoRecipient,
    #[error("not a sealed value: {0}")]
    Malformed(String),
    #[error("none of the operator's identities opens it (sealed to another key?)")]
    WrongKey,
}

/// The operator's identities; the first is the current one (new seals use its recipient), the
/// others still open what was sealed to them, so keys can be rotated.
pub struct Keyring {
    identities: Vec<age::x25519::Identity>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({} identities)", self.identities.len())
    }
}

impl Keyring {
    /// A new single identity (`berth keygen`).
    pub fn generate() -> Keyring {
        Keyring { identities: vec![age::x25519::Identity::generate()] }
    }

    /// Parses an identity file: one `AGE-SECRET-KEY-1…` a line; `#` comments and blank lines skipped.
    pub fn load(text: &str) -> Result<Keyring, SealError> {
        let mut identities = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            identities.push(age::x25519::Identity::from_str(line).map_err(|_| SealError::BadIdentity(i + 1))?);
        }
        if identities.is_empty() {
            return Err(SealError::NoIdentity);
        }
        Ok(Keyring { identities })
    }

    /// The identity file's text (for `berth keygen --out`): comment, identity.
    pub fn to_file(&self) -> String {
        let mut out = String::new();
        for id in &self.identities {
            out.push_str(&format!("# recipient: {}\n{}\n", id.to_public(), id.to_string().expose_secret()));
        }
        out
    }

    /// The public recipients, current first: what the operator publishes for sealing.
    pub fn recipients(&self) -> Vec<String> {
        self.identities.iter().map(|i| i.to_public().to_string()).collect()
    }

    /// Opens a sealed value.
    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let reader = age::armor::ArmoredReader::new(sealed.trim().as_bytes());
        let decryptor = age::Decryptor::new(reader).map_err(|e| SealError::Malformed(e.to_string()))?;
        let ids = self.identities.iter().map(|i| i as &dyn age::Identity);
        let mut stream = decryptor.decrypt(ids).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SealError::WrongKey,
            other => SealError::Malformed(other.to_string()),
        })?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).map_err(|e| SealError::Malformed(e.to_string()))?;
        Ok(out)
    }
}

/// Seals `value` to every recipient given (`age1…`); any of their identities opens it.
pub fn seal(recipients: &[String], value: &[u8]) -> Result<String, SealError> {
    let parsed: Vec<age::x25519::Recipient> = recipients
        .iter()
        .map(|r| age::x25519::Recipient::from_str(r.trim()).map_err(|_| SealError::BadRecipient(r.clone())))
        .collect::<Result<_, _>>()?;
    if parsed.is_empty() {
        return Err(SealError::NoRecipient);
    }
    let encryptor = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
        .map_err(|e| SealError::Malformed(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| SealError::Malformed(e.to_string()))?;
    let mut writer = encryptor.wrap_output(armor).map_err(|e| SealError::Malformed(e.to_string()))?;
    writer.write_all(value).map_err(|e| SealError::Malformed(e.to_string()))?;
    writer.finish().and_then(|armor| armor.finish()).map_err(|e| SealError::Malformed(e.to_string()))?;
    Ok(String::from_utf8(out).expect("armour is ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_sealed_to_a_recipient_opens_with_its_identity_only() {
        let operator = Keyring::generate();
        let sealed = seal(&operator.recipients(), b"hunter2").unwrap();
        assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(operator.open(&sealed).unwrap(), b"hunter2");
        assert_eq!(Keyring::generate().open(&sealed), Err(SealError::WrongKey));
        assert!(matches!(operator.open("nope"), Err(SealError::Malformed(_))));
    }

    #[test]
    fn an_identity_file_round_trips_and_an_old_key_still_opens_after_rotation() {
        let old = Keyring::generate();
        let sealed_to_old = seal(&old.recipients(), b"v1").unwrap();
        let new = Keyring::generate();
        let file = format!("{}{}", new.to_file(), old.to_file());
        let ring = Keyring::load(&file).unwrap();
        assert_eq!(ring.recipients(), [new.recipients(), old.recipients()].concat(), "current first");
        assert_eq!(ring.open(&sealed_to_old).unwrap(), b"v1");
        assert!(!format!("{ring:?}").contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn bad_inputs_are_named_without_their_contents() {
        assert_eq!(Keyring::load("# only a comment\n").unwrap_err(), SealError::NoIdentity);
        assert_eq!(Keyring::load("AGE-SECRET-KEY-1NOPE\n").unwrap_err(), SealError::BadIdentity(1));
        assert!(matches!(seal(&["age1bogus".into()], b"x"), Err(SealError::BadRecipient(_))));
        assert_eq!(seal(&[], b"x"), Err(SealError::NoRecipient));
    }
}
