//! Rebuilds the crate when a migration is added or changed: `refinery::embed_migrations!` reads `migrations/`
//! at compile time, and without this a new file would leave an old binary embedding the old set.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
