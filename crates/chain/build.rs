//! The bindings read the contracts' artifacts at compile time: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../../contracts/out");
}
