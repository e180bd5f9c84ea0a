//! smolvm-signing
