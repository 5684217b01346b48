//! `bench`: measures Flotilla and prints its figures as JSON on stdout.
//!
//! Each area is a subcommand in its own module under `bench/`.

fn main() {
    eprintln!("usage: bench <area> [options]; no areas are measured yet");
    std::process::exit(2);
}
