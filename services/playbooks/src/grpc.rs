//! The gRPC edge of playbooks.

use sqlx::PgPool;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, paging, time};
use tenure_proto::playbooks::v1::{self as pb, playbooks_service_server::PlaybooksService};
use tonic::{Request, Response, Status};

use crate::store::{self, NewVersion, PlaybookVersion};
use crate::{SCHEMA, definition};

const MAX_DEFINITION_BYTES: usize = 256 * 1024;

pub struct PlaybooksApi {
    pool: PgPool,
}

impl PlaybooksApi {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn create_playbook(
        &self,
        request: pb::CreatePlaybookRequest,
    ) -> ApiResult<pb::CreatePlaybookResponse> {
        const METHOD: &str = "CreatePlaybook";
        let mut violations = Violations::default();
        let format = pb::DefinitionFormat::try_from(request.format).unwrap_or_default();
        if format != pb::DefinitionFormat::Json {
            return Err(ApiError::invalid("format", "must be JSON"));
        }
        if request.definition.len() > MAX_DEFINITION_BYTES {
            return Err(ApiError::invalid(
                "definition",
                format!("must be at most {MAX_DEFINITION_BYTES} bytes"),
            ));
        }
        let parsed = definition::parse_json(&request.definition, "definition", &mut violations);
        violations.into_result()?;
        let parsed = parsed.ok_or_else(|| anyhow::anyhow!("a valid definition did not parse"))?;

        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let stored = store::insert_next_version(
            &mut tx,
            &NewVersion {
                name: &parsed.name,
                title: &parsed.title,
                definition: &request.definition,
                format: format as i16,
                step_count: parsed.steps.len() as i32,
            },
        )
        .await?;
        let response = pb::CreatePlaybookResponse {
            playbook: Some(playbook_to_proto(stored)),
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn list_playbooks(
        &self,
        request: pb::ListPlaybooksRequest,
    ) -> ApiResult<pb::ListPlaybooksResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<String> = paging::decode_token(&request.page_token)?;
        let mut rows =
            store::list_latest(&self.pool, after.as_deref(), i64::from(size) + 1).await?;
        let next_page_token = paging::finish_page(&mut rows, size, |r| r.name.clone());
        Ok(pb::ListPlaybooksResponse {
            playbooks: rows.into_iter().map(playbook_to_proto).collect(),
            next_page_token,
        })
    }
}

fn playbook_to_proto(row: PlaybookVersion) -> pb::Playbook {
    pb::Playbook {
        name: row.name,
        version: row.version,
        title: row.title,
        definition: row.definition,
        format: i32::from(row.format),
        step_count: row.step_count,
        create_time: Some(time::to_timestamp(row.create_time)),
    }
}

#[tonic::async_trait]
impl PlaybooksService for PlaybooksApi {
    async fn create_playbook(
        &self,
        request: Request<pb::CreatePlaybookRequest>,
    ) -> Result<Response<pb::CreatePlaybookResponse>, Status> {
        Ok(Response::new(
            self.create_playbook(request.into_inner()).await?,
        ))
    }

    async fn list_playbooks(
        &self,
        request: Request<pb::ListPlaybooksRequest>,
    ) -> Result<Response<pb::ListPlaybooksResponse>, Status> {
        Ok(Response::new(
            self.list_playbooks(request.into_inner()).await?,
        ))
    }
}
