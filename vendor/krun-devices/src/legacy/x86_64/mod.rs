pub mod cmos;
pub mod serial;
