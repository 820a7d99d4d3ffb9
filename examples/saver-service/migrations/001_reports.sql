-- Reports stored by the saver. The primary key is the message id, so a message
-- delivered twice (at-least-once delivery) is stored once.
CREATE TABLE IF NOT EXISTS report_events (
  message_id  text PRIMARY KEY,
  event_name  text NOT NULL,
  content     text NOT NULL,
  stored_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS user_reports (
  message_id  text PRIMARY KEY,
  user_id     bigint NOT NULL,
  status      text NOT NULL,
  stored_at   timestamptz NOT NULL DEFAULT now()
);
