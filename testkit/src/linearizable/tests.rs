use std::time::Instant;

use super::*;

type RegisterOp = Operation<RegisterInput<u64>, RegisterOutput<u64>>;
type SetOp = Operation<SetInput, SetOutput>;

const REGISTER: RegisterModel<u64> = RegisterModel { initial: 0 };

fn op<I, O>(client: u64, input: I, output: O, call: u64, ret: u64) -> Operation<I, O> {
    Operation {
        client,
        input,
        output: Some(output),
        call,
        ret,
    }
}

fn timed_out<I, O>(client: u64, input: I, call: u64) -> Operation<I, O> {
    Operation {
        client,
        input,
        output: None,
        call,
        ret: 0,
    }
}

fn write(client: u64, value: u64, call: u64, ret: u64) -> RegisterOp {
    op(
        client,
        RegisterInput::Write(value),
        RegisterOutput::Ok,
        call,
        ret,
    )
}

fn read(client: u64, value: u64, call: u64, ret: u64) -> RegisterOp {
    op(
        client,
        RegisterInput::Read,
        RegisterOutput::Value(value),
        call,
        ret,
    )
}

fn set_op(client: u64, input: SetInput, output: SetOutput, call: u64, ret: u64) -> SetOp {
    op(client, input, output, call, ret)
}

fn check_set(history: &[SetOp]) -> Result<(), Violation> {
    check_by_key(&SetModel, history, |input| input.name().to_owned())
}

fn name(n: &str) -> String {
    n.to_owned()
}

#[test]
fn sequential_history_is_linearizable() {
    let history = [
        write(1, 1, 0, 10),
        read(2, 1, 20, 30),
        write(1, 2, 40, 50),
        read(2, 2, 60, 70),
    ];
    assert_eq!(check(&REGISTER, &history), Ok(()));
}

#[test]
fn overlapping_writes_and_reads_are_linearizable() {
    // Both writes overlap both reads, so write 2, read 2, write 1, read 1 is an order.
    let history = [
        write(1, 1, 0, 100),
        write(2, 2, 10, 110),
        read(3, 2, 20, 30),
        read(3, 1, 40, 50),
        read(4, 1, 120, 130),
    ];
    assert_eq!(check(&REGISTER, &history), Ok(()));
}

#[test]
fn unknown_write_that_took_effect_is_linearizable() {
    let history = [
        timed_out(1, RegisterInput::Write(7), 0),
        read(2, 7, 100, 200),
        read(2, 7, 300, 400),
    ];
    assert_eq!(check(&REGISTER, &history), Ok(()));
}

#[test]
fn unknown_write_that_never_took_effect_is_linearizable() {
    let history = [
        timed_out(1, RegisterInput::Write(7), 0),
        read(2, 0, 100, 200),
        read(2, 0, 300, 400),
    ];
    assert_eq!(check(&REGISTER, &history), Ok(()));
}

#[test]
fn unknown_write_may_take_effect_long_after_its_client_moved_on() {
    let history = [
        timed_out(1, RegisterInput::Write(7), 0),
        write(1, 3, 500, 600),
        read(2, 3, 700, 800),
        read(2, 7, 900, 1000),
    ];
    assert_eq!(check(&REGISTER, &history), Ok(()));
}

#[test]
fn unknown_write_cannot_be_undone_once_seen() {
    let history = [
        timed_out(1, RegisterInput::Write(7), 0),
        read(2, 7, 100, 200),
        read(2, 0, 300, 400),
    ];
    let violation = check(&REGISTER, &history).expect_err("the value 7 vanished");
    assert_eq!(violation.culprit, 2, "{violation}");
}

#[test]
fn stale_read_after_completed_write_is_not_linearizable() {
    let history = [write(1, 1, 0, 10), read(2, 0, 20, 30)];
    let violation = check(&REGISTER, &history).expect_err("the read missed a completed write");
    println!("{violation}");
    assert_eq!(violation.culprit, 1);
    assert_eq!(violation.ops, [0, 1]);
    let report = violation.to_string();
    assert!(
        report.contains("#0 client 1 [0 ns, 10 ns] -> Ok: Write(1)"),
        "{report}"
    );
    assert!(
        report.contains("#1 client 2 [20 ns, 30 ns] -> Value(0): Read  <- no order"),
        "{report}"
    );
}

#[test]
fn read_seeing_a_value_then_an_older_one_is_not_linearizable() {
    // The write is still running, so either read alone is fine; together they go back in time.
    let history = [write(1, 1, 0, 100), read(2, 1, 10, 20), read(2, 0, 30, 40)];
    let violation = check(&REGISTER, &history).expect_err("the reads went back in time");
    println!("{violation}");
    assert_eq!(violation.culprit, 2);
    assert_eq!(violation.ops, [0, 1, 2]);
}

#[test]
fn violation_is_cut_at_the_first_return_no_order_explains() {
    let mut history = vec![write(1, 1, 0, 10), read(2, 0, 20, 30)];
    history.extend((0..10).map(|i| write(1, i, 100 + 20 * i, 110 + 20 * i)));
    let violation = check(&REGISTER, &history).expect_err("the read missed a completed write");
    assert_eq!(violation.culprit, 1);
    assert_eq!(violation.ops, [0, 1], "{violation}");
}

#[test]
fn concurrent_add_and_remove_on_names_are_linearizable() {
    use SetInput::*;
    let history = [
        set_op(1, Add(name("a")), SetOutput::Added, 0, 50),
        set_op(2, Contains(name("a")), SetOutput::Contains(false), 10, 20),
        set_op(3, Remove(name("a")), SetOutput::Removed, 30, 60),
        set_op(2, Contains(name("a")), SetOutput::Contains(false), 70, 80),
        set_op(1, Add(name("b")), SetOutput::Added, 70, 90),
        set_op(3, Add(name("b")), SetOutput::AlreadyPresent, 80, 95),
        set_op(2, Remove(name("c")), SetOutput::Absent, 90, 99),
        timed_out(1, Add(name("c")), 100),
    ];
    assert_eq!(check_set(&history), Ok(()));
}

#[test]
fn two_adds_both_answered_added_are_not_linearizable() {
    use SetInput::*;
    let history = [
        set_op(1, Add(name("b")), SetOutput::Added, 0, 5),
        set_op(1, Add(name("a")), SetOutput::Added, 10, 30),
        set_op(2, Add(name("a")), SetOutput::Added, 15, 25),
    ];
    let violation = check_set(&history).expect_err("a name was created twice");
    println!("{violation}");
    assert_eq!(violation.ops, [1, 2]);
    assert_eq!(violation.failing_parts, 1);
    let report = violation.to_string();
    assert!(report.contains("1 of 2 part(s) fail"), "{report}");
    assert!(
        report.contains("Add(\"a\")") && !report.contains("Add(\"b\")"),
        "{report}"
    );
}

#[test]
fn read_of_a_name_never_added_is_not_linearizable() {
    use SetInput::*;
    let history = [
        set_op(1, Add(name("a")), SetOutput::Added, 0, 10),
        set_op(
            2,
            Contains(name("ghost")),
            SetOutput::Contains(true),
            20,
            30,
        ),
    ];
    let violation = check_set(&history).expect_err("a name nobody added was present");
    assert_eq!(
        (violation.culprit, violation.ops.as_slice()),
        (1, [1].as_slice())
    );
    assert!(
        violation.to_string().contains("Contains(\"ghost\")"),
        "{violation}"
    );
}

#[test]
fn smallest_failing_key_is_reported() {
    use SetInput::*;
    let history = [
        set_op(1, Add(name("big")), SetOutput::Added, 0, 10),
        set_op(1, Remove(name("big")), SetOutput::Removed, 20, 30),
        set_op(1, Remove(name("big")), SetOutput::Removed, 40, 50),
        set_op(2, Remove(name("small")), SetOutput::Removed, 0, 10),
    ];
    let violation = check_set(&history).expect_err("two keys break");
    assert_eq!(
        (violation.failing_parts, violation.ops.as_slice()),
        (2, [3].as_slice())
    );
}

/// A small xorshift generator, so the generated histories are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A linearizable history of `ops` set operations by `clients` clients over `keys` names:
/// each takes effect at a random moment between its call and return, and 1 in 50 times out
/// (and then takes effect or not). Returns the history and the final set.
fn set_history(ops: usize, keys: u64, clients: u64, seed: u64) -> (Vec<SetOp>, BTreeSet<String>) {
    let mut rng = Rng(seed);
    let mut free_at = vec![0; clients as usize];
    let mut history = Vec::with_capacity(ops);
    let mut effects = Vec::new();
    let mut timeouts = Vec::with_capacity(ops);
    for i in 0..ops {
        let client = i as u64 % clients;
        let key = format!("app-{}", rng.below(keys));
        let input = match rng.below(3) {
            0 => SetInput::Add(key),
            1 => SetInput::Remove(key),
            _ => SetInput::Contains(key),
        };
        let call = free_at[client as usize] + rng.below(50);
        let effect = call + rng.below(200);
        let ret = effect + rng.below(200);
        let timed_out = rng.below(50) == 0;
        free_at[client as usize] = if timed_out { call + 400 } else { ret };
        timeouts.push(timed_out);
        if !timed_out || rng.below(2) == 0 {
            effects.push((effect, i));
        }
        history.push(Operation {
            client,
            input,
            output: None,
            call,
            ret,
        });
    }
    effects.sort_unstable();
    let mut set = BTreeSet::new();
    for (_, i) in effects {
        let op = &mut history[i];
        let present = set.contains(op.input.name());
        let output = match &op.input {
            SetInput::Add(_) if present => SetOutput::AlreadyPresent,
            SetInput::Add(_) => SetOutput::Added,
            SetInput::Remove(_) if present => SetOutput::Removed,
            SetInput::Remove(_) => SetOutput::Absent,
            SetInput::Contains(_) => SetOutput::Contains(present),
        };
        set = applied(&set, &op.input);
        op.output = Some(output);
    }
    // A timed-out operation's output was never seen, whether or not it took effect.
    for (op, lost) in history.iter_mut().zip(timeouts) {
        if lost {
            op.output = None;
        }
    }
    (history, set)
}

#[test]
fn set_history_of_2000_ops_over_100_keys_checks_quickly() {
    let (mut history, set) = set_history(2000, 100, 5, 0x5eed);
    let start = Instant::now();
    let result = check_set(&history);
    println!(
        "checked 2000 operations over 100 keys in {:?}",
        start.elapsed()
    );
    assert_eq!(result, Ok(()));

    // One late read that contradicts the final set is caught and pinned on its key (one
    // with no timeouts, which could otherwise take effect late and explain it).
    let end = history.iter().map(|op| op.ret).max().unwrap_or(0) + 1000;
    let probe = (0..100)
        .map(|k| format!("app-{k}"))
        .find(|key| {
            history.iter().any(|op| op.input.name() == key)
                && history
                    .iter()
                    .all(|op| op.input.name() != key || op.output.is_some())
        })
        .expect("some key has no timeouts");
    let wrong = SetOutput::Contains(!set.contains(&probe));
    history.push(set_op(
        9,
        SetInput::Contains(probe.clone()),
        wrong,
        end,
        end + 10,
    ));
    let violation = check_set(&history).expect_err("the late read is wrong");
    assert_eq!(violation.culprit, history.len() - 1, "{violation}");
    assert!(
        violation
            .ops
            .iter()
            .all(|&i| history[i].input.name() == probe),
        "{violation}"
    );
}

/// A linearizable history of `ops` reads and unique writes on one register by `clients`
/// clients, made like [`set_history`].
fn register_history(ops: usize, clients: u64, seed: u64) -> Vec<RegisterOp> {
    let mut rng = Rng(seed);
    let mut free_at = vec![0; clients as usize];
    let mut history = Vec::with_capacity(ops);
    let mut effects = Vec::new();
    let mut timeouts = Vec::with_capacity(ops);
    for i in 0..ops {
        let client = i as u64 % clients;
        let input = if rng.below(2) == 0 {
            RegisterInput::Write(i as u64 + 1)
        } else {
            RegisterInput::Read
        };
        let call = free_at[client as usize] + rng.below(50);
        let effect = call + rng.below(200);
        let ret = effect + rng.below(200);
        let timed_out = rng.below(50) == 0;
        free_at[client as usize] = if timed_out { call + 400 } else { ret };
        timeouts.push(timed_out);
        if !timed_out || rng.below(2) == 0 {
            effects.push((effect, i));
        }
        history.push(Operation {
            client,
            input,
            output: None,
            call,
            ret,
        });
    }
    effects.sort_unstable();
    let mut value = 0;
    for (_, i) in effects {
        let op = &mut history[i];
        op.output = Some(match op.input {
            RegisterInput::Write(v) => {
                value = v;
                RegisterOutput::Ok
            }
            RegisterInput::Read => RegisterOutput::Value(value),
        });
    }
    for (op, lost) in history.iter_mut().zip(timeouts) {
        if lost {
            op.output = None;
        }
    }
    history
}

#[test]
fn register_history_of_1000_ops_checks_without_partitioning() {
    let n = 1000;
    let mut history = register_history(n, 5, 0xfeed);
    let start = Instant::now();
    let result = check(&REGISTER, &history);
    println!(
        "checked {n} operations on one register in {:?}",
        start.elapsed()
    );
    assert_eq!(result, Ok(()));

    // A final read of the initial value, after every write returned, is caught.
    let end = history.iter().map(|op| op.ret).max().unwrap_or(0) + 1000;
    history.push(read(9, 0, end, end + 10));
    let start = Instant::now();
    let violation = check(&REGISTER, &history).expect_err("the final read is stale");
    println!(
        "found the stale read among {} operations in {:?}",
        n + 1,
        start.elapsed()
    );
    assert_eq!(violation.culprit, n);
}
