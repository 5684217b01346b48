//! A linearizability checker for histories recorded against the hub's Admin API.
//!
//! A test records each request as an [`Operation`]: who made it, what it asked, what came back
//! (or nothing, if it timed out) and when it was called and returned. [`check`] then searches for
//! a linearization — one order of the operations that respects real time (an operation that
//! returned before another was called comes first) and that a sequential [`Model`] accepts
//! step by step.
//!
//! The search is Wing & Gong's, with Lowe's memoisation as in Porcupine: a search node is the
//! set of operations linearized so far and the model's state, and a node seen before is not
//! explored again, because what can follow depends on nothing else. [`check_by_key`] uses
//! P-compositionality (Horn & Kroening): a history of independent keys is linearizable iff each
//! key's sub-history is, so each is searched alone, which turns one exponential search into many
//! small ones. Checking linearizability is NP-complete: a history with many overlapping
//! operations on one key can still take long, and a failing search must exhaust every order
//! (in debug builds, 1,000 register operations by 5 clients fail in about a second; 2,000 in
//! about six), so keep parts short — partition by key wherever the model allows.
//!
//! # Operations whose outcome is unknown
//!
//! A request that timed out may have taken effect at any moment after its call — even after the
//! history ends — or never. Like Knossos's `:info` operations, the checker lets the search apply
//! it at any point after its call or not at all: it never returns, so it never forces the search
//! to place it, and the history is linearizable once every operation with a known outcome is
//! placed. Applying it needs the states it may lead to without knowing its output, which only the
//! model knows: [`Model::step_unknown`]. That method has no default on purpose: a default of "it
//! cannot take effect" would make a correct history in which a timed-out write did land look like
//! a violation, and nothing generic can enumerate outputs.
//!
//! Optional operations multiply the search: a timed-out write that never landed could be applied
//! anywhere. Three prunings, each skipping only a node that another node explored (or to be
//! explored) can stand in for, keep that in check: an unknown outcome that leaves the state as it
//! was is not applied (not applying it stays possible); the memo skips a node whose state and
//! known-outcome operations match an earlier node's and whose unknown-outcome operations are a
//! superset of its (see `Seen`); and just after an unknown outcome is applied, a step that leads
//! where the same step leads from before it is skipped (the parent has that step). Known
//! outcomes are tried before unknown ones so that the smaller node tends to come first.
//!
//! # Why not a crate
//!
//! Looked at on crates.io (December 2026; `cargo search` does not work against this machine's
//! registry mirror, so candidates were looked up by name and through documentation search):
//! - `stateright` 0.31 (`semantics::LinearizabilityTester`): built to be fed invoke/return events
//!   live inside its model checker; it has no real-time timestamps (it orders by "operations each
//!   thread had completed at invoke"), its spec is a deterministic reference object (`invoke`
//!   returns the one output) rather than a step relation over states, an in-flight operation must
//!   be the last of its thread (a client that timed out cannot go on), and the search is a plain
//!   backtracking without memoisation or partitioning, so 2,000 operations are out of reach. It
//!   would also bring a model checker and its web explorer (`tiny_http`, `dashmap`, …) into the
//!   test kit for one function.
//! - `lincheck` 0.2: generates scenarios and runs them under `loom`; histories are recorded by its
//!   own recorders, every operation has a return value (no unknown outcomes), and it depends on
//!   `loom` and `proptest`. It checks in-process data structures, not recorded network histories.
//! - `todc-utils` 0.1.1 (`WGLChecker`): the same algorithm, but last released in September 2023,
//!   every call must have a response (no timeouts), the spec is deterministic, the answer is a
//!   bare `bool` with no counterexample, and there is no P-compositionality.
//! - `porcupine`, `knossos` and `linearize` on crates.io are unrelated crates (Win32 wrappers, a
//!   maze generator, enum maps); Porcupine and Knossos themselves are Go and Clojure.
//!
//! # Reports
//!
//! A [`Violation`] shows the smallest non-linearizable part found: with [`check_by_key`], the
//! failing key with the fewest operations; within it, the history is cut at the earliest return
//! time after which it is no longer linearizable (linearizability is prefix-closed, so that time
//! is found by bisection), and only operations called by then are shown — the operation returning
//! at the cut is one whose answer no order of the operations before it explains.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    /// The object's state between operations.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// What an operation asks.
    type Input: Clone + fmt::Debug;
    /// What an operation answers.
    type Output: Clone + fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` with `output` from `state`, or None if that output is impossible there.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// The states `input` may lead to from `state` when its output was never seen.
    ///
    /// It must include `step(state, input, o)` for every output `o` that `step` accepts there;
    /// extra states only make the checker more lenient. "Not applied" is not listed here: the
    /// checker always considers it.
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;
}

/// One request in a recorded history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client made it; shown in reports (real time alone orders operations).
    pub client: u64,
    /// What it asked.
    pub input: I,
    /// What came back; None if the outcome is unknown (a timeout): it may have taken effect at
    /// any time after its call, or never.
    pub output: Option<O>,
    /// When it was called, in ns since the history's start.
    pub call: u64,
    /// When it returned, in ns since the history's start; ignored for unknown outcomes, which
    /// are treated as never returning.
    pub ret: u64,
}

/// Why a history is not linearizable, with the smallest non-linearizable part found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Indices into the checked history of the operations shown: those of the part called by
    /// the cut, in call order.
    pub ops: Vec<usize>,
    /// Index of an operation returning at the cut: no linearization of what came before
    /// explains its output.
    pub culprit: usize,
    /// How many parts (keys) were not linearizable; 1 for [`check`].
    pub failing_parts: usize,
    report: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

impl std::error::Error for Violation {}

/// Checks that `history` is linearizable with respect to `model`.
///
/// # Panics
///
/// If an operation with a known outcome returned before it was called: the recording is broken.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> Result<(), Violation> {
    check_by_key(model, history, |_| ())
}

/// Checks each key's sub-history separately (P-compositionality).
///
/// Sound when operations on different keys never affect one another in `model`.
///
/// # Panics
///
/// If an operation with a known outcome returned before it was called: the recording is broken.
pub fn check_by_key<M: Model, K: Ord>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: impl Fn(&M::Input) -> K,
) -> Result<(), Violation> {
    let mut parts: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        assert!(
            op.output.is_none() || op.ret >= op.call,
            "operation #{index} returned at {} before its call at {}",
            op.ret,
            op.call
        );
        parts.entry(key(&op.input)).or_default().push(index);
    }
    let failing: Vec<&Vec<usize>> = parts
        .values()
        .filter(|part| search(model, &cut(history, part, u64::MAX)).is_err())
        .collect();
    match failing.iter().min_by_key(|part| part.len()) {
        None => Ok(()),
        Some(smallest) => Err(explain(
            model,
            history,
            smallest,
            failing.len(),
            parts.len(),
        )),
    }
}

/// An operation as the search sees it.
struct Entry<'h, M: Model> {
    /// Index into the checked history.
    index: usize,
    input: &'h M::Input,
    /// None if unknown, or if the operation was still pending at the cut.
    output: Option<&'h M::Output>,
    call: u64,
    /// `u64::MAX` when the output is None.
    ret: u64,
}

/// The operations of `part` called by time `at`, as the history looked then: those that had
/// not returned by `at` have unknown outcomes. Sorted by call time.
fn cut<'h, M: Model>(
    history: &'h [Operation<M::Input, M::Output>],
    part: &[usize],
    at: u64,
) -> Vec<Entry<'h, M>> {
    let mut entries: Vec<Entry<'h, M>> = part
        .iter()
        .map(|&index| (index, &history[index]))
        .filter(|(_, op)| op.call <= at)
        .map(|(index, op)| {
            let output = op.output.as_ref().filter(|_| op.ret <= at);
            let ret = if output.is_some() { op.ret } else { u64::MAX };
            Entry {
                index,
                input: &op.input,
                output,
                call: op.call,
                ret,
            }
        })
        .collect();
    entries.sort_by_key(|e| e.call);
    entries
}

/// A point in the search: the state reached and the (operation, next state) pairs to try.
struct Node<S> {
    state: S,
    children: Vec<(usize, S)>,
    next: usize,
}

/// Searches for a linearization of `ops` (sorted by call). On failure returns the longest
/// partial linearization found, as (position in `ops`, state after it).
fn search<M: Model>(model: &M, ops: &[Entry<'_, M>]) -> Result<(), Vec<(usize, M::State)>> {
    let known = ops.iter().filter(|e| e.output.is_some()).count();
    if known == 0 {
        return Ok(());
    }
    let mut open = Open::new(ops.len());
    let mut placed_known = 0;
    let mut seen = Seen::new(ops);
    let mut path: Vec<usize> = Vec::new();
    let mut longest = Vec::new();
    let init = model.init();
    let mut stack = vec![Node {
        children: candidates(model, ops, &open, &init, None),
        state: init,
        next: 0,
    }];
    while let Some(node) = stack.last_mut() {
        let Some((op, state)) = node.children.get(node.next).cloned() else {
            // A dead end: the path here is as long as this branch got.
            if path.len() > longest.len() {
                let states = stack.iter().skip(1).map(|node| node.state.clone());
                longest = path.iter().copied().zip(states).collect();
            }
            stack.pop();
            if let Some(op) = path.pop() {
                open.restore(op);
                placed_known -= usize::from(ops[op].output.is_some());
            }
            continue;
        };
        node.next += 1;
        open.remove(op);
        if !seen.first_visit(&open.linearized, &state) {
            open.restore(op);
            continue;
        }
        placed_known += usize::from(ops[op].output.is_some());
        if placed_known == known {
            return Ok(());
        }
        path.push(op);
        let before_unknown = ops[op]
            .output
            .is_none()
            .then(|| &stack[stack.len() - 1].state);
        let children = candidates(model, ops, &open, &state, before_unknown);
        stack.push(Node {
            children,
            state,
            next: 0,
        });
    }
    Err(longest)
}

/// The search nodes reached so far, Lowe's memo extended for unknown outcomes.
///
/// A node is skipped if an earlier one had the same state, the same known-outcome operations
/// linearized and a subset of its unknown-outcome ones: the earlier node can do all this one can
/// (unknown outcomes are optional and never hold others back), and it has failed or is on the
/// path being explored. Without the subset rule, a timed-out write that never took effect could
/// be applied at any point and would double the nodes of every stretch the search goes over.
struct Seen<S> {
    /// One bit per operation with a known outcome.
    known: Vec<u64>,
    /// By known-outcome operations linearized and state: the unknown-outcome sets reached.
    reached: HashMap<(Vec<u64>, S), Vec<Vec<u64>>>,
}

impl<S: Clone + Eq + Hash> Seen<S> {
    fn new<M: Model<State = S>>(ops: &[Entry<'_, M>]) -> Self {
        let mut known = vec![0; ops.len().div_ceil(64)];
        for (i, _) in ops.iter().enumerate().filter(|(_, e)| e.output.is_some()) {
            known[i / 64] |= 1 << (i % 64);
        }
        Seen {
            known,
            reached: HashMap::new(),
        }
    }

    /// Records the node; false if an earlier node covers it.
    fn first_visit(&mut self, linearized: &[u64], state: &S) -> bool {
        let split = |keep_known: bool| -> Vec<u64> {
            let pairs = linearized.iter().zip(&self.known);
            pairs
                .map(|(l, k)| if keep_known { l & k } else { l & !k })
                .collect()
        };
        let (known, unknown) = (split(true), split(false));
        let sets = self.reached.entry((known, state.clone())).or_default();
        let covered = |earlier: &Vec<u64>| earlier.iter().zip(&unknown).all(|(e, u)| e & !u == 0);
        if sets.iter().any(covered) {
            return false;
        }
        sets.push(unknown);
        true
    }
}

/// The operations not yet linearized: a set for the memo, and a list in call order that
/// unlinks and relinks in constant time (the search undoes in reverse order, as in Knuth's
/// dancing links), so finding candidates skips what is already linearized.
struct Open {
    /// One bit per operation, set once linearized.
    linearized: Vec<u64>,
    /// Neighbours in the list; position `len` is the sentinel at both ends.
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Open {
    fn new(len: usize) -> Self {
        Open {
            linearized: vec![0; len.div_ceil(64)],
            next: (1..=len + 1).map(|i| i % (len + 1)).collect(),
            prev: (0..=len).map(|i| (i + len) % (len + 1)).collect(),
        }
    }

    fn remove(&mut self, op: usize) {
        self.linearized[op / 64] |= 1 << (op % 64);
        let (prev, next) = (self.prev[op], self.next[op]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    /// Undoes the latest `remove` not yet undone, which must be of `op`.
    fn restore(&mut self, op: usize) {
        self.linearized[op / 64] &= !(1 << (op % 64));
        let (prev, next) = (self.prev[op], self.next[op]);
        self.next[prev] = op;
        self.prev[next] = op;
    }

    /// The open operations in call order.
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        let sentinel = self.next.len() - 1;
        std::iter::successors(Some(self.next[sentinel]), |&i| Some(self.next[i]))
            .take_while(move |&i| i != sentinel)
    }
}

/// The operations that may be linearized next from `state`, each with a state it leads to.
///
/// An operation may go next unless some other operation not yet linearized returned before it
/// was called; operations returning exactly when another is called count as concurrent. An
/// unknown outcome is never returned, so it never holds the others back.
fn candidates<M: Model>(
    model: &M,
    ops: &[Entry<'_, M>],
    open: &Open,
    state: &M::State,
    before_unknown: Option<&M::State>,
) -> Vec<(usize, M::State)> {
    // Scanning in call order, an operation called after the earliest return seen so far cannot
    // return earlier, so the scan stops there.
    let mut first_return = u64::MAX;
    for i in open.iter() {
        if ops[i].call > first_return {
            break;
        }
        first_return = first_return.min(ops[i].ret);
    }
    let mut children = Vec::new();
    let mut unknown = Vec::new();
    for i in open.iter().take_while(|&i| ops[i].call <= first_return) {
        let op = &ops[i];
        match op.output {
            Some(output) => children.extend(model.step(state, op.input, output).map(|s| (i, s))),
            // Leading back to `state` is the same as not applying it, which stays possible.
            None => unknown.extend(
                model
                    .step_unknown(state, op.input)
                    .into_iter()
                    .filter(|s| s != state)
                    .map(|s| (i, s)),
            ),
        }
    }
    // Known outcomes first, so that a node without some unknown outcome applied is explored,
    // and covers the same node with it applied, before that one is reached.
    children.append(&mut unknown);
    // Just after an unknown outcome was applied, a step that leads where the same step leads
    // from before it shows that it made no difference: the parent has that step as a child,
    // which covers this one (as in `Seen`). Without this, every stale timed-out write tried
    // before the one a read needs would double the search.
    if let Some(before) = before_unknown {
        let same_from_before = |&(i, ref next): &(usize, M::State)| {
            let op = &ops[i];
            match op.output {
                Some(output) => model.step(before, op.input, output).as_ref() == Some(next),
                None => model.step_unknown(before, op.input).contains(next),
            }
        };
        children.retain(|child| !same_from_before(child));
    }
    children
}

/// Builds the report for a failing part: finds the earliest cut that fails and shows it.
fn explain<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    part: &[usize],
    failing_parts: usize,
    parts: usize,
) -> Violation {
    let mut returns: Vec<u64> = part
        .iter()
        .filter(|&&i| history[i].output.is_some())
        .map(|&i| history[i].ret)
        .collect();
    returns.sort_unstable();
    returns.dedup();
    // The whole part fails, so the last return fails; bisect for the first that does.
    let first_failing =
        returns.partition_point(|&at| search(model, &cut(history, part, at)).is_ok());
    let at = returns.get(first_failing).copied().unwrap_or(u64::MAX);
    let ops = cut(history, part, at);
    let longest = search(model, &ops).err().unwrap_or_default();
    let culprit = ops
        .iter()
        .find(|e| e.output.is_some() && e.ret == at)
        .map_or(part[0], |e| e.index);

    let mut report = String::new();
    let _ = writeln!(
        report,
        "history is not linearizable: {failing_parts} of {parts} part(s) fail; the smallest, cut \
         at {at} ns when op #{culprit} returned, has {} operation(s):",
        ops.len()
    );
    for e in &ops {
        let op = &history[e.index];
        let returned = match &op.output {
            Some(output) if op.ret <= at => format!("{} ns] -> {output:?}", op.ret),
            Some(output) => format!("{} ns] -> {output:?} (after the cut)", op.ret),
            None => "?] -> unknown outcome".to_string(),
        };
        let mark = if e.index == culprit {
            "  <- no order explains this"
        } else {
            ""
        };
        let _ = writeln!(
            report,
            "  #{} client {} [{} ns, {returned}: {:?}{mark}",
            e.index, op.client, op.call, op.input
        );
    }
    let _ = writeln!(
        report,
        "longest linearization found ({} step(s)):",
        longest.len()
    );
    for (i, state) in &longest {
        let _ = writeln!(
            report,
            "  #{} {:?} => {state:?}",
            ops[*i].index, ops[*i].input
        );
    }
    Violation {
        ops: ops.iter().map(|e| e.index).collect(),
        culprit,
        failing_parts,
        report,
    }
}

/// A set of names, as the hub's Admin API keeps them; check it per name with [`check_by_key`]
/// and [`SetInput::name`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SetModel;

/// A request to a [`SetModel`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetInput {
    /// Add a name.
    Add(String),
    /// Remove a name.
    Remove(String),
    /// Ask whether a name is present (a read).
    Contains(String),
}

impl SetInput {
    /// The name the request is about: the key for [`check_by_key`].
    pub fn name(&self) -> &str {
        match self {
            SetInput::Add(name) | SetInput::Remove(name) | SetInput::Contains(name) => name,
        }
    }
}

/// An answer from a [`SetModel`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SetOutput {
    /// `Add`: the name was not there and now is.
    Added,
    /// `Add`: the name was already there.
    AlreadyPresent,
    /// `Remove`: the name was there and now is not.
    Removed,
    /// `Remove`: the name was not there.
    Absent,
    /// `Contains`: whether the name was there.
    Contains(bool),
}

impl Model for SetModel {
    type State = BTreeSet<String>;
    type Input = SetInput;
    type Output = SetOutput;

    fn init(&self) -> Self::State {
        Self::State::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &SetInput,
        output: &SetOutput,
    ) -> Option<Self::State> {
        let present = state.contains(input.name());
        let valid = match (input, output) {
            (SetInput::Add(_), SetOutput::Added) => !present,
            (SetInput::Add(_), SetOutput::AlreadyPresent) => present,
            (SetInput::Remove(_), SetOutput::Removed) => present,
            (SetInput::Remove(_), SetOutput::Absent) => !present,
            (SetInput::Contains(_), SetOutput::Contains(seen)) => *seen == present,
            _ => false,
        };
        valid.then(|| applied(state, input))
    }

    fn step_unknown(&self, state: &Self::State, input: &SetInput) -> Vec<Self::State> {
        // Whatever it answered, an Add leaves the name present and a Remove leaves it absent.
        vec![applied(state, input)]
    }
}

/// The set after `input` took effect.
fn applied(state: &BTreeSet<String>, input: &SetInput) -> BTreeSet<String> {
    let mut next = state.clone();
    match input {
        SetInput::Add(name) => {
            next.insert(name.clone());
        }
        SetInput::Remove(name) => {
            next.remove(name);
        }
        SetInput::Contains(_) => {}
    }
    next
}

/// A single value that is written and read whole, starting at `initial`.
#[derive(Clone, Debug, Default)]
pub struct RegisterModel<V> {
    /// The value before any write.
    pub initial: V,
}

/// A request to a [`RegisterModel`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput<V> {
    /// Replace the value.
    Write(V),
    /// Read the value.
    Read,
}

/// An answer from a [`RegisterModel`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput<V> {
    /// `Write` succeeded.
    Ok,
    /// `Read` saw this value.
    Value(V),
}

impl<V: Clone + Eq + Hash + fmt::Debug> Model for RegisterModel<V> {
    type State = V;
    type Input = RegisterInput<V>;
    type Output = RegisterOutput<V>;

    fn init(&self) -> V {
        self.initial.clone()
    }

    fn step(&self, state: &V, input: &RegisterInput<V>, output: &RegisterOutput<V>) -> Option<V> {
        match (input, output) {
            (RegisterInput::Write(value), RegisterOutput::Ok) => Some(value.clone()),
            (RegisterInput::Read, RegisterOutput::Value(seen)) if seen == state => {
                Some(state.clone())
            }
            _ => None,
        }
    }

    fn step_unknown(&self, state: &V, input: &RegisterInput<V>) -> Vec<V> {
        match input {
            RegisterInput::Write(value) => vec![value.clone()],
            RegisterInput::Read => vec![state.clone()],
        }
    }
}

#[cfg(test)]
mod tests;
