//! Placeholder replaced by the benchmark work (issue 4).
fn main() {}
