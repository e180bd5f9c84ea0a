pub mod fs_utils;
pub mod passthrough;
