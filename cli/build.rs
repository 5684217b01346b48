//! The `flotilla` binary embeds the example fleet (for `flotilla demo`) and the real-cluster
//! scripts and Go modules (for `flotilla demo --real`): a change to them rebuilds it.

fn main() {
    for dir in ["../examples/fleet", "../scripts", "../k8s"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
