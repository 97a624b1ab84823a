//! Steps claimed together are recorded together, with one statement per
//! kind of change; a step whose changes cannot be written fails alone; a
//! claim finds each due step's run by its key.

use std::time::Duration;

use tenure_tests::{TestStack, eventually};

use super::{playbook, start};

#[tokio::test]
async fn a_step_that_cannot_be_recorded_fails_alone_and_the_batch_completes() {
    let mut app = TestStack::spawn().await;
    let ids: Vec<String> = (0..6).map(|i| format!("batch-{i}")).collect();
    app.plain_accounts(&ids).await;
    let db = app.db().await;
    // The database refuses the tasks of one account (as a constraint, a
    // full disk or a bug might): its step's changes cannot be written.
    sqlx::raw_sql(
        "CREATE FUNCTION public.refuse_task() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'tasks of batch-3 are refused'; END $$; \
         CREATE TRIGGER refuse_task BEFORE INSERT ON playbooks.tasks \
         FOR EACH ROW WHEN (NEW.account_id = 'batch-3') EXECUTE FUNCTION public.refuse_task();",
    )
    .execute(&db)
    .await
    .unwrap();
    playbook(
        &mut app,
        serde_json::json!({
            "name": "two-tasks", "title": "Two tasks", "trigger": {"type": "manual"},
            "steps": [
                {"id": "first", "type": "task", "title": "First for {{account.name}}", "next": "second"},
                {"id": "second", "type": "task", "title": "Second", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let started = start(&mut app, "two-tasks", &ids).await;
    assert_eq!(started.runs.len(), ids.len());

    let completed = |n: i64| {
        let db = db.clone();
        async move {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM playbooks.runs WHERE playbook = 'two-tasks' AND state = 2",
            )
            .fetch_one(&db)
            .await
            .ok()?;
            (done == n).then_some(())
        }
    };
    assert!(
        eventually(Duration::from_secs(30), || completed(5))
            .await
            .is_some(),
        "every other run completes"
    );
    let (attempts, error, tasks): (i32, String, i64) = sqlx::query_as(
        "SELECT s.attempts, s.last_error, \
           (SELECT count(*) FROM playbooks.tasks t WHERE t.account_id = 'batch-3') \
         FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) \
         WHERE r.account_id = 'batch-3' AND s.state = 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(attempts >= 1, "the refused step counts a failed attempt");
    assert!(error.contains("tasks of batch-3 are refused"), "{error}");
    assert_eq!(tasks, 0, "nothing of the refused step is kept");
    let others: i64 =
        sqlx::query_scalar("SELECT count(*) FROM playbooks.tasks WHERE account_id <> 'batch-3'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(others, 10, "two tasks for each other run, once each");

    // Once the database takes its tasks again, the step's retry completes
    // the run.
    sqlx::raw_sql("DROP TRIGGER refuse_task ON playbooks.tasks")
        .execute(&db)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || completed(6))
            .await
            .is_some(),
        "the refused run completes after its retry"
    );
    app.stop().await;
}

/// A claim finds each due step's run by its key, whatever the statistics
/// say. Tested as a column, the run's state let the planner take the
/// partial index of active runs for it; with statistics gathered while no
/// run was active it estimated one and read that whole index once per due
/// step.
#[tokio::test]
async fn a_claim_finds_each_run_by_its_key_whatever_the_statistics_say() {
    let mut app = TestStack::spawn().await;
    let ids: Vec<String> = (0..300).map(|i| format!("claim-{i:03}")).collect();
    app.plain_accounts(&ids).await;
    playbook(
        &mut app,
        serde_json::json!({
            "name": "at-once", "title": "Ends at once", "trigger": {"type": "manual"},
            "steps": [{"id": "done", "type": "end"}]
        }),
    )
    .await;
    start(&mut app, "at-once", &ids).await;
    let db = app.db().await;
    let ended = || {
        let db = db.clone();
        async move {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM playbooks.runs WHERE state <> 2")
                    .fetch_one(&db)
                    .await
                    .ok()?;
            (open == 0).then_some(())
        }
    };
    assert!(
        eventually(Duration::from_secs(30), ended).await.is_some(),
        "every run ends"
    );
    // Statistics from a quiet time: every run ended, none active.
    sqlx::raw_sql("ANALYZE playbooks.runs; ANALYZE playbooks.steps")
        .execute(&db)
        .await
        .unwrap();
    let mut conn = db.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PREPARE claim(int) AS {}",
        tenure_playbooks::engine::claim_statement()
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE claim(32)")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("runs_pkey") && !plan.contains("runs_one_active_idx"),
        "{plan}"
    );
    drop(conn);
    app.stop().await;
}
