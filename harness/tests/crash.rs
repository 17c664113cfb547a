//! Crash safety with real processes: `dare` commands SIGKILLed at random moments (the seed
//! is printed; `DARE_TEST_SEED=N` replays a run). Whatever was acknowledged (exit 0) stays;
//! an operation killed before it answered may have landed or not, never half; `dare fsck
//! --deep` finds no unreadable object afterwards (garbage is allowed: a killed put leaves an
//! unreferenced file until `fsck --repair`).

mod common;

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, Store, pattern, write};
use serde_json::Value;

/// How long a kind of command takes here, learnt from the runs that finished, so that the
/// kill delays follow the machine's speed (and its load) rather than a constant.
struct Timing(Duration);

impl Timing {
    /// A delay from 0 to twice the typical run time: about half the commands are killed, at
    /// any moment of their life (start-up, writing, syncing, committing, exiting).
    fn delay(&self, rng: &mut Rng) -> Duration {
        self.0.mul_f64(rng.below(2000) as f64 / 1000.0)
    }

    /// Runs `args` and SIGKILLs it after a random delay unless it finished first.
    fn run(&mut self, s: &Store, args: &[&str], rng: &mut Rng) -> ExitStatus {
        let delay = self.delay(rng);
        let t0 = Instant::now();
        let mut child = s
            .cmd(args)
            // A killed rotation leaves its lease behind: a short one (test builds only).
            .env("DARE_LEASE_TTL_MS", "500")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.0 = self.0.mul_f64(0.7) + t0.elapsed().mul_f64(0.3);
                return st;
            }
            let spent = t0.elapsed();
            if spent >= delay {
                let _ = child.kill(); // SIGKILL
                return child.wait().unwrap();
            }
            std::thread::sleep((delay - spent).min(Duration::from_micros(500)));
        }
    }

    /// Times one run of `args` (which must succeed) as the first estimate.
    fn of(s: &Store, args: &[&str]) -> Timing {
        let t0 = Instant::now();
        s.ok(args);
        Timing(t0.elapsed().max(Duration::from_millis(1)))
    }
}

/// What an object may be now: any state among these (`None`: absent). A version is a seed of
/// `pattern` with its length.
type Candidates = Vec<Option<(u64, usize)>>;

fn fsck_deep(s: &Store) -> Value {
    let o = s.run(&["fsck", "--deep", "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "fsck found unreadable objects: {r}"
    );
    assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
    r
}

#[test]
fn sigkill_during_puts_overwrites_and_deletes() {
    let mut rng = Rng::from_env("sigkill_during_puts_overwrites_and_deletes");
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let names = ["a", "dir/b", "dir/sub/c", "d", "e"];
    let sizes = [0usize, 1000, 70_000, 600_000, 2_500_000];
    let mut state: BTreeMap<&str, Candidates> = names.iter().map(|n| (*n, vec![None])).collect();
    // First estimates of how long a put of each size and a delete take.
    let mut put_time: Vec<Timing> = sizes
        .iter()
        .map(|&len| {
            Timing::of(
                &s,
                &[
                    "put",
                    "bkt/calibrate",
                    &write(&s.tmp("c"), &pattern(len, 1)),
                ],
            )
        })
        .collect();
    let mut rm_time = Timing::of(&s, &["rm", "bkt/calibrate"]);
    let (mut kills, mut acked, mut version, mut step) = (0, 0, 1000u64, 0);
    // Until 40 commands were killed (at most 200 commands).
    while kills < 40 && step < 200 {
        step += 1;
        let name = names[rng.below(names.len() as u64) as usize];
        let target = format!("bkt/{name}");
        let put = rng.below(10) < 7;
        let (status, landed) = if put {
            version += 1;
            let k = rng.below(sizes.len() as u64) as usize;
            let f = write(&s.tmp("in"), &pattern(sizes[k], version));
            let st = put_time[k].run(&s, &["put", &target, &f], &mut rng);
            (st, Some((version, sizes[k])))
        } else {
            (rm_time.run(&s, &["rm", &target], &mut rng), None)
        };
        let c = state.get_mut(name).unwrap();
        match status.code() {
            Some(0) => {
                acked += 1;
                *c = vec![landed];
            }
            // rm of an absent object: it was absent.
            Some(3) if !put => {
                assert!(c.contains(&None), "step {step}: {name} absent, but {c:?}");
                *c = vec![None];
            }
            None => {
                kills += 1;
                c.push(landed);
            }
            Some(x) => panic!(
                "step {step}: dare {} {target} exited {x}",
                if put { "put" } else { "rm" }
            ),
        }
    }
    eprintln!("{step} commands: {kills} killed, {acked} acknowledged");
    assert!(
        kills >= 20,
        "too few kills to mean anything ({kills} of {step})"
    );

    let r = fsck_deep(&s);
    eprintln!(
        "fsck: {} objects, {} garbage file(s)",
        r["objects"],
        r["garbage"].as_array().unwrap().len()
    );
    let check = |s: &Store| {
        let listed = s.json(&["ls", "bkt", "--json"]);
        let listed: Vec<&str> = listed["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        for (name, c) in &state {
            let o = s.run(&["get", &format!("bkt/{name}")]);
            match o.status.code() {
                Some(0) => {
                    let ok = c
                        .iter()
                        .flatten()
                        .any(|&(v, len)| o.stdout == pattern(len, v));
                    assert!(ok, "{name}: content is none of {c:?}");
                    assert!(listed.contains(name));
                }
                Some(3) => {
                    assert!(c.contains(&None), "{name}: absent, but {c:?}");
                    assert!(!listed.contains(name));
                }
                x => panic!(
                    "{name}: get exited {x:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
            }
        }
    };
    check(&s);
    // Repair removes the killed puts' files and nothing an object owns.
    s.ok(&["fsck", "--repair", "--grace", "0"]);
    let r = fsck_deep(&s);
    assert!(r["garbage"].as_array().unwrap().is_empty(), "{r}");
    check(&s);
}

#[test]
fn rotation_and_rewrap_sigkilled_at_random_moments() {
    let mut rng = Rng::from_env("rotation_and_rewrap_sigkilled_at_random_moments");
    // The binary built with test hooks, which reads DARE_LEASE_TTL_MS.
    let s = Store::new_hooked(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut objects = Vec::new();
    for i in 0..40u64 {
        let data = pattern(500 + i as usize * 37, i);
        let t = format!("bkt/x{i:02}");
        s.ok(&["put", &t, &write(&s.tmp("in"), &data)]);
        objects.push((t, data));
    }
    let mut rotate = Timing::of(&s, &["keys", "rotate", "--wait"]);
    let (mut killed, mut round) = (0, 0);
    // Until 8 rotations were killed (at most 30).
    while killed < 8 && round < 30u64 {
        if rotate
            .run(&s, &["keys", "rotate", "--wait"], &mut rng)
            .code()
            .is_none()
        {
            killed += 1;
        }
        // Whatever happened, objects read and any interrupted rotation resumes to completion.
        let (t, data) = &objects[round as usize % objects.len()];
        assert_eq!(&s.ok(&["get", t]), data, "round {round}");
        // After a kill, the dead runner's lease must expire first.
        s.ok(&["keys", "rotation", "resume", "--wait"]);
        let data = pattern(3000, 1000 + round);
        let t = format!("bkt/r{round:02}");
        s.ok(&["put", &t, &write(&s.tmp("in"), &data)]);
        objects.push((t, data));
        round += 1;
    }
    eprintln!("{killed} of {round} rotations killed");
    assert!(killed >= 3, "too few kills to mean anything");
    let st = s.json(&["keys", "rotation", "status", "--json"]);
    let hist = st["history"].as_array().unwrap();
    assert!(hist.iter().all(|t| t["state"] == "completed"), "{st}");
    let active = hist.last().unwrap()["new_rotation_version"]
        .as_u64()
        .unwrap();

    // Rewrap killed at random moments: each run continues where the last stopped.
    let files = s.data_files();
    let mut rewrap = Timing::of(&s, &["keys", "rewrap", "--bucket", "bkt"]);
    s.ok(&["keys", "rotate", "--wait"]);
    let (mut killed, mut runs) = (0, 0);
    while killed < 4 && runs < 20 {
        runs += 1;
        if rewrap
            .run(&s, &["keys", "rewrap", "--all"], &mut rng)
            .code()
            .is_none()
        {
            killed += 1;
        }
    }
    eprintln!("{killed} of {runs} rewraps killed");
    let r = s.json(&["keys", "rewrap", "--all", "--json"]);
    let again = s.json(&["keys", "rewrap", "--all", "--json"]);
    assert_eq!(again["buckets"][0]["rewrapped"], 0, "{r} {again}");
    assert_eq!(again["buckets"][0]["stale_before"], 0, "{again}");
    assert_eq!(again["rotation_version"], active + 1);
    assert_eq!(s.data_files(), files, "rewrap touched a data file");
    for (t, data) in &objects {
        assert_eq!(&s.ok(&["get", t]), data, "{t}");
        let h = s.json(&["head", t, "--json"]);
        assert_eq!(h["key_ref"]["rotation_version"], active + 1, "{t}");
    }
    fsck_deep(&s);
}
