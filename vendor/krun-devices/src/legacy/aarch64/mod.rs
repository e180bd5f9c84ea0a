pub mod gpio;
pub mod serial;
