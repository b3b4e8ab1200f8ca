//! Project automation entry point (filled in below).
fn main() {}
