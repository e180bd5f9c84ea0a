//! Signing and strict verification, against RFC 8032 vectors and hand-made
//! malleations.

use smolvm_signing::{verify_trusted, KeyId, PublicKey, SecretKey, SigningError};

/// RFC 8032 section 7.1, TEST 1 (empty message).
const RFC_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const RFC_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
/// Key id of `RFC_PUBLIC`, computed outside this crate with Python:
/// `hashlib.sha256(b"smolvm-key-id-v1\0" + pk).hexdigest()[:16]`.
const RFC_KEY_ID: &str = "3c09b807520d5931";

/// The group order l = 2^252 + 27742317777372353535851937790883648493,
/// little-endian.
const GROUP_ORDER: &str = "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010";

fn bytes<const N: usize>(hex_text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_text, &mut out).unwrap();
    out
}

fn rfc_key() -> (SecretKey, PublicKey) {
    let secret = SecretKey::from_seed(&bytes(RFC_SECRET));
    let public = PublicKey::from_bytes(&bytes(RFC_PUBLIC)).unwrap();
    (secret, public)
}

#[test]
fn rfc8032_test1_signs_and_verifies() {
    let (secret, public) = rfc_key();
    assert_eq!(secret.public_key(), public);
    assert_eq!(secret.sign(b""), bytes::<64>(RFC_SIGNATURE));
    public.verify(b"", &bytes(RFC_SIGNATURE)).unwrap();
}

#[test]
fn key_id_matches_independent_computation() {
    let (_, public) = rfc_key();
    assert_eq!(public.key_id().to_string(), RFC_KEY_ID);
    assert_eq!(public.key_id(), RFC_KEY_ID.parse::<KeyId>().unwrap());
}

#[test]
fn generated_key_round_trips() {
    let secret = SecretKey::generate();
    let msg = b"smolvm artifact header";
    let sig = secret.sign(msg);
    secret.public_key().verify(msg, &sig).unwrap();
}

#[test]
fn generated_keys_differ() {
    assert_ne!(
        SecretKey::generate().public_key(),
        SecretKey::generate().public_key()
    );
}

#[test]
fn wrong_key_is_rejected() {
    let msg = b"message";
    let sig = SecretKey::generate().sign(msg);
    let other = SecretKey::generate().public_key();
    match other.verify(msg, &sig) {
        Err(SigningError::BadSignature { key_id }) => assert_eq!(key_id, other.key_id()),
        result => panic!("expected BadSignature, got {result:?}"),
    }
}

#[test]
fn every_flipped_message_bit_is_rejected() {
    let (secret, public) = rfc_key();
    let msg = *b"flip me";
    let sig = secret.sign(&msg);
    for bit in 0..msg.len() * 8 {
        let mut altered = msg;
        altered[bit / 8] ^= 1 << (bit % 8);
        assert!(public.verify(&altered, &sig).is_err(), "bit {bit} accepted");
    }
}

#[test]
fn every_flipped_signature_bit_is_rejected() {
    let (secret, public) = rfc_key();
    let msg = b"flip the signature";
    let sig = secret.sign(msg);
    for bit in 0..sig.len() * 8 {
        let mut altered = sig;
        altered[bit / 8] ^= 1 << (bit % 8);
        assert!(public.verify(msg, &altered).is_err(), "bit {bit} accepted");
    }
}

/// Adds l to the S half of a signature: the same value mod l, so a verifier
/// that reduces S accepts it, but it is not the canonical encoding.
fn add_group_order_to_s(sig: &[u8; 64]) -> [u8; 64] {
    let order: [u8; 32] = bytes(GROUP_ORDER);
    let mut out = *sig;
    let mut carry = 0u16;
    for (s, l) in out[32..].iter_mut().zip(order) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        *s = sum.to_le_bytes()[0];
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + l overflowed 256 bits");
    out
}

#[test]
fn non_canonical_s_is_rejected() {
    let (_, public) = rfc_key();
    let malleated = add_group_order_to_s(&bytes(RFC_SIGNATURE));
    // S + l of RFC 8032 TEST 1, computed independently with Python.
    assert_eq!(
        hex::encode(&malleated[32..]),
        "4c8c7872aa064e049dbb3013fbf29380d25bf5f0595bbe24655141438e7a101b"
    );
    assert!(matches!(
        public.verify(b"", &malleated),
        Err(SigningError::BadSignature { .. })
    ));
}

#[test]
fn s_equal_to_group_order_is_rejected() {
    let (_, public) = rfc_key();
    let mut sig: [u8; 64] = bytes(RFC_SIGNATURE);
    sig[32..].copy_from_slice(&bytes::<32>(GROUP_ORDER));
    assert!(public.verify(b"", &sig).is_err());
}

#[test]
fn small_order_public_keys_are_refused() {
    let identity = {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    };
    match PublicKey::from_bytes(&identity) {
        Err(SigningError::WeakPublicKey { bytes }) => assert_eq!(bytes, identity),
        result => panic!("identity point accepted: {result:?}"),
    }
    // The other small-order points (orders 2, 4 and 8), as listed in
    // libsodium's ed25519 blocklist.
    for small_order in [
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    ] {
        assert!(
            matches!(
                PublicKey::from_bytes(&bytes(small_order)),
                Err(SigningError::WeakPublicKey { .. })
            ),
            "{small_order} accepted"
        );
    }
}

#[test]
fn trusted_signer_verifies() {
    let secret = SecretKey::generate();
    let msg = b"trusted";
    let sig = secret.sign(msg);
    let other = SecretKey::generate().public_key();
    verify_trusted(
        msg,
        &sig,
        &secret.public_key(),
        &[other, secret.public_key()],
    )
    .unwrap();
}

#[test]
fn trusted_signer_with_bad_signature_is_rejected() {
    let secret = SecretKey::generate();
    let mut sig = secret.sign(b"trusted");
    sig[0] ^= 1;
    let signer = secret.public_key();
    assert!(matches!(
        verify_trusted(b"trusted", &sig, &signer, &[signer]),
        Err(SigningError::BadSignature { .. })
    ));
}

#[test]
fn different_key_with_different_id_is_untrusted() {
    let secret = SecretKey::generate();
    let msg = b"untrusted";
    let sig = secret.sign(msg);
    let signer = secret.public_key();
    let trusted = SecretKey::generate().public_key();
    assert_ne!(trusted.key_id(), signer.key_id());
    match verify_trusted(msg, &sig, &signer, &[trusted]) {
        Err(SigningError::UntrustedKey { key_id }) => assert_eq!(key_id, signer.key_id()),
        result => panic!("expected UntrustedKey, got {result:?}"),
    }
    assert!(matches!(
        verify_trusted(msg, &sig, &signer, &[]),
        Err(SigningError::UntrustedKey { .. })
    ));
}
