use std::collections::BTreeMap;

use tonic::Code;

use super::*;
use crate::state::source::{Blob, RenderError};
use crate::state::{RenderOutcome, Timestamp};

fn state_with(commits: &[(&str, bool)]) -> State {
    let mut state = State::bootstrap(BTreeMap::new());
    for (commit, good) in commits {
        let fetch = Command::RecordFetch {
            source: "origin".into(),
            url: "file:///repo".into(),
            commit: (*commit).to_owned(),
            at: Timestamp(1),
        };
        state.apply(&fetch).expect("fetched");
        let outcome = if *good {
            let blob = Blob::from_content(commit.as_bytes()).expect("blob");
            RenderOutcome::Rendered {
                bundles: BTreeMap::new(),
                index: crate::state::source::test_index(&[blob]),
                staged: None,
                spec: String::new(),
                charts: Default::default(),
            }
        } else {
            RenderOutcome::Failed {
                error: RenderError {
                    file: "bundles/app/app.yaml".into(),
                    line: Some(3),
                    message: "undefined variable".into(),
                },
            }
        };
        let render = Command::RecordRender {
            revision: RevisionRef {
                source: "origin".into(),
                commit: (*commit).to_owned(),
            },
            outcome,
            at: Timestamp(2),
        };
        state.apply(&render).expect("rendered");
    }
    state
}

#[test]
fn revisions_are_named_by_commit_or_an_unambiguous_prefix() {
    let state = state_with(&[
        ("abcd1111aaaa", true),
        ("abcd2222bbbb", true),
        ("ffee0000cccc", false),
    ]);
    let found = rendered_revision(&state, "ABCD1").expect("a unique prefix");
    assert_eq!(found.commit, "abcd1111aaaa");
    let ambiguous = rendered_revision(&state, "abcd").expect_err("two commits start so");
    assert_eq!(ambiguous.code(), Code::InvalidArgument);
    assert!(
        ambiguous
            .message()
            .contains("ambiguous (2 revisions start with it)"),
        "{}",
        ambiguous.message()
    );
    let short = rendered_revision(&state, "abc").expect_err("too short");
    assert!(
        short.message().contains("at least 4"),
        "{}",
        short.message()
    );
    let unknown = rendered_revision(&state, "0123").expect_err("no such commit");
    assert_eq!(unknown.code(), Code::NotFound);
    let failed = rendered_revision(&state, "ffee").expect_err("did not render");
    assert_eq!(failed.code(), Code::FailedPrecondition);
    assert!(
        failed.message().contains("bundles/app/app.yaml:3"),
        "{}",
        failed.message()
    );
}
