//! `flotilla-demo` embeds the example fleet and the real-cluster scripts and Go modules (for
//! `--real`): a change to them rebuilds it.

fn main() {
    for dir in ["../examples/fleet", "../scripts", "../k8s"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
