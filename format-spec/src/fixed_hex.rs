//! Fixed-length byte values that the manifest writes as lowercase hex: the
//! SHA-256 of a section or of the stub, and the signer's key id and public key.
//!
//! Each is decoded once, when the manifest is parsed, and is bytes from then
//! on: hashes computed while reading are compared as bytes, and the hex form
//! exists only in the manifest and in what is shown to people or used as a
//! file name. Lowercase is the only accepted spelling, so every value has one
//! encoding (the manifest must re-encode to the bytes that were signed, SPEC.md
//! 4.1) and the rootfs cache's file names are the manifest's text.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use sha2::Digest;
use thiserror::Error;

/// A string that is not the lowercase hex form of a fixed-length value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("expected {expected} lowercase hex characters")]
pub struct ParseHexError {
    /// How many hex characters the value has (twice its byte length).
    pub expected: usize,
}

/// `input` decoded into `out` if it is exactly `2 * out.len()` characters of
/// `[0-9a-f]`. `hex::decode` alone would take uppercase too.
fn decode_lower_hex(input: &str, out: &mut [u8]) -> Result<(), ParseHexError> {
    let err = ParseHexError {
        expected: 2 * out.len(),
    };
    if input.len() != err.expected
        || !input
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(err);
    }
    hex::decode_to_slice(input, out).map_err(|_| err)
}

/// Deserializes a lowercase hex string with a visitor, so that escaped JSON
/// strings (which arrive as a transient `&str`) are handled like plain ones.
/// `field` names the manifest member in the error.
struct LowerHexVisitor<'f, T> {
    field: Option<&'f str>,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, ParseHexError>,
}

impl<T> Visitor<'_> for LowerHexVisitor<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(|e| match self.field {
            Some(field) => E::custom(format_args!("field `{field}`: {e}")),
            None => E::invalid_value(de::Unexpected::Str(v), &self),
        })
    }
}

macro_rules! lower_hex_bytes {
    ($(#[$doc:meta])* $name:ident, $len:literal, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length of the value in bytes.
            pub const LEN: usize = $len;

            /// Wraps the raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The raw bytes, by value.
            pub const fn to_bytes(self) -> [u8; $len] {
                self.0
            }

            /// Deserializes the value of manifest member `field`, naming
            /// it in the error (a plain `Deserialize` does not know where it is).
            pub fn deserialize_field<'de, D: Deserializer<'de>>(
                deserializer: D,
                field: &str,
            ) -> Result<Self, D::Error> {
                deserializer.deserialize_str(LowerHexVisitor {
                    field: Some(field),
                    expecting: $expecting,
                    parse: str::parse,
                })
            }

            /// The lowercase hex form, written into `buf` without allocating.
            fn encode<'b>(&self, buf: &'b mut [u8; 2 * $len]) -> &'b str {
                hex::encode_to_slice(self.0, buf).expect("buffer is twice the length");
                std::str::from_utf8(buf).expect("hex is ASCII")
            }
        }

        /// Lowercase hex; `{:.N}` shows the first `N` characters.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.encode(&mut [0; 2 * $len]))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        /// Accepts exactly the [`Display`](fmt::Display) form.
        impl FromStr for $name {
            type Err = ParseHexError;

            fn from_str(input: &str) -> Result<Self, ParseHexError> {
                let mut bytes = [0; $len];
                decode_lower_hex(input, &mut bytes)?;
                Ok($name(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.encode(&mut [0; 2 * $len]))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(LowerHexVisitor {
                    field: None,
                    expecting: $expecting,
                    parse: str::parse,
                })
            }
        }
    };
}

lower_hex_bytes!(
    /// A SHA-256 hash: of a section's stored bytes or of the stub.
    Sha256Digest,
    32,
    "64 lowercase hex characters (a SHA-256)"
);

lower_hex_bytes!(
    /// The signer's key id as the manifest records it: 8 bytes, 16 lowercase
    /// hex characters. Whether it belongs to the public key beside it is the
    /// verifier's check (SPEC.md 7.3; the derivation lives in the signing crate).
    SignerKeyId,
    8,
    "16 lowercase hex characters (a key id)"
);

lower_hex_bytes!(
    /// The signer's ed25519 public key as the manifest records it: 32 bytes,
    /// 64 lowercase hex characters. Not yet checked to be a valid curve point;
    /// the verifier does that when it turns this into a key.
    SignerPublicKey,
    32,
    "64 lowercase hex characters (an ed25519 public key)"
);

lower_hex_bytes!(
    /// An ed25519 signature in a key rotation link: 64 bytes, 128 lowercase
    /// hex characters. The verifier checks it (SPEC.md "Key rotation").
    Ed25519Signature,
    64,
    "128 lowercase hex characters (an ed25519 signature)"
);

impl Sha256Digest {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        sha2::Sha256::digest(data).into()
    }
}

impl From<sha2::digest::Output<sha2::Sha256>> for Sha256Digest {
    fn from(output: sha2::digest::Output<sha2::Sha256>) -> Self {
        Sha256Digest(output.into())
    }
}

/// The source image's manifest digest as the config records it:
/// `sha256:` and 64 lowercase hex characters (the only algorithm image
/// tools in use write, and the only one the packer can check).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageDigest(pub Sha256Digest);

impl ImageDigest {
    const PREFIX: &'static str = "sha256:";
    const EXPECTING: &'static str =
        "`sha256:` and 64 lowercase hex characters (an image manifest digest)";
}

impl fmt::Display for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl fmt::Debug for ImageDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageDigest({self})")
    }
}

/// A string that is not `sha256:` and 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("expected {}", ImageDigest::EXPECTING)]
pub struct ParseImageDigestError;

impl FromStr for ImageDigest {
    type Err = ParseImageDigestError;

    fn from_str(input: &str) -> Result<Self, ParseImageDigestError> {
        input
            .strip_prefix(Self::PREFIX)
            .and_then(|hex| hex.parse().ok())
            .map(ImageDigest)
            .ok_or(ParseImageDigestError)
    }
}

impl Serialize for ImageDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ImageDigest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ImageDigest::EXPECTING)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ImageDigest, E> {
                v.parse().map_err(|_| {
                    E::custom(format_args!(
                        "field `config.image_digest`: expected {}",
                        ImageDigest::EXPECTING
                    ))
                })
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn display_parse_and_serde_round_trip() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(d.to_string(), ABC);
        assert_eq!(ABC.parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(format!("{d:.16}"), &ABC[..16]);
        assert_eq!(format!("{d:?}"), format!("Sha256Digest({ABC})"));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{ABC}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        let id = SignerKeyId::from_bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<SignerKeyId>().unwrap(), id);
    }

    #[test]
    fn an_escaped_but_valid_string_is_decoded() {
        // JSON may escape any character; the value is what counts here (the
        // manifest's canonical check refuses the escaped spelling later).
        let json = format!("\"\\u0062{}\"", &ABC[1..]);
        assert_eq!(
            serde_json::from_str::<Sha256Digest>(&json)
                .unwrap()
                .to_string(),
            ABC
        );
    }

    #[test]
    fn everything_but_lowercase_hex_of_the_exact_length_is_refused() {
        let upper = ABC.to_uppercase();
        let short = &ABC[..63];
        let long = format!("{ABC}0");
        let non_hex = format!("{}g", &ABC[..63]);
        let spaced = format!(" {}", &ABC[1..]);
        for bad in [upper.as_str(), short, &long, &non_hex, &spaced, ""] {
            assert_eq!(
                bad.parse::<Sha256Digest>(),
                Err(ParseHexError { expected: 64 }),
                "{bad:?}"
            );
            let err = serde_json::from_str::<Sha256Digest>(&format!("\"{bad}\"")).unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected 64 lowercase hex characters"),
                "{err}"
            );
        }
        assert!("0123456789ABCDEF".parse::<SignerKeyId>().is_err());
        assert!("0123456789abcdef0".parse::<SignerKeyId>().is_err());
        assert!(serde_json::from_str::<SignerPublicKey>("7").is_err());
    }

    #[test]
    fn image_digests_are_sha256_and_lowercase_hex_only() {
        let text = format!("sha256:{ABC}");
        let d: ImageDigest = text.parse().unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<ImageDigest>(&format!("\"{text}\"")).unwrap(),
            d
        );
        for bad in [
            ABC.to_string(),
            format!("sha512:{ABC}"),
            format!("SHA256:{ABC}"),
            format!("sha256:{}", ABC.to_uppercase()),
            format!("sha256:{}", &ABC[1..]),
            format!("sha256:{ABC}0"),
            format!("sha256:{ABC}\u{1b}[2K"),
            String::new(),
        ] {
            assert!(bad.parse::<ImageDigest>().is_err(), "{bad:?}");
            let e = serde_json::from_str::<ImageDigest>(&serde_json::to_string(&bad).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains("field `config.image_digest`"), "{bad:?}: {e}");
        }
    }
}
