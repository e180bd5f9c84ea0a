//! smolvm-runtime
