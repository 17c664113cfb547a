//! The PostgreSQL server crashes (`pg_ctl stop -m immediate`) in the middle of a key rotation,
//! inside each step's transaction in turn: the rotation fails with a clear error that names
//! the server without its password; after the restart the same handle resumes the task, it
//! completes, and every object — written before the rotation, and after it — reads back.

use std::sync::{Arc, Mutex};

use dare::{
    Dare, GetOptions, KeyRef, MetadataLocation, Options, PostgresUrl, PutOptions, RotationOptions,
    TaskState,
};
use dare_keys::StepHook;
use dare_testkit::PgServer;

fn rotation_version(d: &Dare, name: &str) -> u32 {
    match d.head("bkt", name).unwrap().key_ref {
        KeyRef::Hierarchy {
            rotation_version, ..
        } => rotation_version,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn server_crash_inside_each_rotation_step_then_resume() {
    let server = Arc::new(Mutex::new(PgServer::start()));
    let (url, password) = {
        let s = server.lock().unwrap();
        (s.create_database("rot"), s.password().to_owned())
    };
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        metadata: MetadataLocation::Postgres(PostgresUrl::new(&url)),
        ..Options::default()
    };
    let d = Dare::create(&dir.path().join("store"), 4096, &opts).unwrap();
    d.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    let put = |d: &Dare, objects: &mut Vec<(String, Vec<u8>)>| {
        let n = objects.len();
        let data: Vec<u8> = (0..5000 + n * 313).map(|i| (i * 7 + n) as u8).collect();
        let name = format!("o{n}");
        d.put("bkt", &name, &mut &data[..], &PutOptions::default())
            .unwrap();
        objects.push((name, data));
    };
    for _ in 0..5 {
        put(&d, &mut objects);
    }

    let mut expected_rotation = 1;
    for step in 1..=5u8 {
        let crash = {
            let server = server.clone();
            StepHook(Arc::new(move |n| {
                if n == step {
                    server.lock().unwrap().stop_immediate();
                }
            }))
        };
        let ro = RotationOptions {
            inside_step_transaction: Some(crash),
            ..RotationOptions::default()
        };
        let id = d.keys().start_rotation().unwrap();
        let e = d
            .keys()
            .run_rotation(id, &ro)
            .expect_err("the server crashed inside the step");
        let text = format!("{e} / {e:?}");
        assert!(!text.contains(&password), "password shown: {text}");
        assert!(text.contains("***@127.0.0.1"), "step {step}: {text}");

        server.lock().unwrap().start_again();
        let st = d
            .keys()
            .resume_rotation(id, &RotationOptions::default())
            .unwrap_or_else(|e| panic!("resume after a crash in step {step}: {e}"));
        assert_eq!(st.state, TaskState::Completed, "step {step}");
        expected_rotation += 1;

        put(&d, &mut objects);
        assert_eq!(
            rotation_version(&d, &objects.last().unwrap().0),
            expected_rotation,
            "step {step}: new objects use the new rotation key"
        );
        for (name, data) in &objects {
            let got = d
                .get("bkt", name, &GetOptions::default())
                .and_then(|o| o.to_vec())
                .unwrap_or_else(|e| panic!("step {step}: {name}: {e}"));
            assert!(got == *data, "step {step}: {name} differs");
        }
    }
    let history = d.keys().rotation_history().unwrap();
    assert_eq!(history.len(), 5);
    assert!(history.iter().all(|t| t.state == TaskState::Completed));
    // A fresh handle (another node) reads everything too.
    let again = Dare::open(&dir.path().join("store"), &opts).unwrap();
    for (name, data) in &objects {
        let got = again
            .get("bkt", name, &GetOptions::default())
            .unwrap()
            .to_vec()
            .unwrap();
        assert!(got == *data, "{name} differs on a fresh handle");
    }
}
