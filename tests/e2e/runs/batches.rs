//! Steps claimed together are recorded together, with one statement per
//! kind of change; a step whose changes cannot be written fails alone.

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
