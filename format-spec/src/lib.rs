//! smolvm-format
