//! Playbook definitions.

use tenure_proto::playbooks::v1::{CreatePlaybookRequest, DefinitionFormat, ListPlaybooksRequest};
use tenure_tests::{TestStack, violated_fields};

fn definition(name: &str, title: &str) -> String {
    format!(
        r#"{{"name": "{name}", "title": "{title}", "trigger": {{"type": "renewal_approaching", "days": 90}},
            "steps": [
              {{"id": "review", "type": "task", "title": "Renewal review", "next": "hook"}},
              {{"id": "hook", "type": "webhook", "url": "https://example.invalid/hook", "next": "end"}},
              {{"id": "end", "type": "end"}}
            ]}}"#
    )
}

fn create(request_id: &str, definition: String) -> CreatePlaybookRequest {
    CreatePlaybookRequest {
        request_id: request_id.to_owned(),
        definition,
        format: DefinitionFormat::Json as i32,
    }
}

#[tokio::test]
async fn each_create_adds_a_version_and_lists_show_the_latest() {
    let mut app = TestStack::spawn().await;
    let v1 = app
        .playbooks
        .create_playbook(create(
            "p-1",
            definition("renewal-90", "Renewal in 90 days"),
        ))
        .await
        .unwrap();
    let v1 = v1.into_inner().playbook.unwrap();
    assert_eq!((v1.version, v1.step_count), (1, 3));
    let retried = app
        .playbooks
        .create_playbook(create(
            "p-1",
            definition("renewal-90", "Renewal in 90 days"),
        ))
        .await
        .unwrap();
    assert_eq!(
        retried.into_inner().playbook.unwrap().version,
        1,
        "a retry adds no version"
    );
    let v2 = app
        .playbooks
        .create_playbook(create(
            "p-2",
            definition("renewal-90", "Renewal, 90 days out"),
        ))
        .await
        .unwrap();
    assert_eq!(v2.into_inner().playbook.unwrap().version, 2);
    app.playbooks
        .create_playbook(create("", definition("advocates", "Ask advocates")))
        .await
        .unwrap();

    let listed = app
        .playbooks
        .list_playbooks(ListPlaybooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let latest: Vec<_> = listed
        .playbooks
        .iter()
        .map(|p| (p.name.as_str(), p.version))
        .collect();
    assert_eq!(latest, [("advocates", 1), ("renewal-90", 2)]);
    app.stop().await;
}

#[tokio::test]
async fn invalid_definitions_name_each_problem() {
    let mut app = TestStack::spawn().await;
    let broken = definition("Bad Name", "")
        .replace(r#""type": "webhook""#, r#""type": "fax""#)
        .replace(r#""next": "end"}"#, r#""next": "nowhere"}"#);
    let status = app
        .playbooks
        .create_playbook(create("", broken))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "definition.name",
            "definition.title",
            "definition.steps[1].type",
            "definition.steps[2]"
        ]
    );
    let status = app
        .playbooks
        .create_playbook(create("", "not json".into()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["definition"]);
    let listed = app
        .playbooks
        .list_playbooks(ListPlaybooksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.playbooks.is_empty());
    app.stop().await;
}
