//! An email to the account's contacts of a role, within the weekly cap,
//! each once (its Message-ID is derived from run, step and recipient).

use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;

use crate::engine::Engine;
use crate::engine::executor::Due;

impl Engine {
    pub(in crate::engine) async fn send_email(
        &self,
        tx: &mut PgConnection,
        due: &Due,
        role: &str,
        subject: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        let Some(smtp) = &self.smtp else {
            anyhow::bail!("no SMTP relay is configured (PLAYBOOKS_SMTP_URL)");
        };
        let recipients = self.peers.contacts(&due.account_id, role).await?;
        if recipients.is_empty() {
            return Ok(format!("no active {role} to email"));
        }
        let (mut sent, mut capped) = (0, 0);
        for (email, name) in recipients {
            // One decision at a time per recipient, across replicas. Never
            // waited for (two batches could wait on each other): a busy
            // recipient makes the step try again shortly, and what was
            // already sent stays recorded.
            let free: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 1))")
                    .bind(&email)
                    .fetch_one(&mut *tx)
                    .await?;
            anyhow::ensure!(free, "another email to {email} is being decided");
            let message_id = format!("<{}.{}.{}@tenure>", due.run_id, due.seq, short_hash(&email));
            let already: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM playbooks.emails WHERE message_id = $1)",
            )
            .bind(&message_id)
            .fetch_one(&mut *tx)
            .await?;
            if already {
                sent += 1;
                continue;
            }
            let this_week: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM playbooks.emails WHERE recipient = $1 AND sent_at > now() - interval '7 days'",
            )
            .bind(&email)
            .fetch_one(&mut *tx)
            .await?;
            if this_week >= self.config.email_weekly_cap {
                capped += 1;
                continue;
            }
            let Ok(address) = email.parse::<lettre::Address>() else {
                tracing::warn!(%email, "skipping a contact whose address cannot be mailed");
                continue;
            };
            let to =
                lettre::message::Mailbox::new((!name.is_empty()).then(|| name.clone()), address);
            let message = lettre::Message::builder()
                .from(self.config.email_from.parse()?)
                .to(to)
                .subject(subject)
                .message_id(Some(message_id.clone()))
                .body(body.to_owned())?;
            lettre::AsyncTransport::send(smtp, message).await?;
            sqlx::query(
                "INSERT INTO playbooks.emails (message_id, run_id, seq, account_id, recipient, subject) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&message_id)
            .bind(due.run_id)
            .bind(due.seq)
            .bind(&due.account_id)
            .bind(&email)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
            sent += 1;
        }
        Ok(format!("emailed {sent}, capped {capped}"))
    }
}

fn short_hash(text: &str) -> String {
    Sha256::digest(text.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
