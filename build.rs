//! `sqlx::migrate!` embeds the migrations when the crate compiles; without
//! this, adding a migration file would not rebuild anything, and a binary
//! without it would pass for current.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
