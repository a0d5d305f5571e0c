-- How a webhook's requests are signed (issue 19, gateway.signing): the scheme, the header an
-- HMAC scheme signs in, and a StandardWebhooksEd25519 webhook's key pair (the private key kept
-- as the client secret is, with the one it replaced signing until previous_secret_expires).
ALTER TABLE webhooks ADD COLUMN signature_scheme text NOT NULL DEFAULT 'StandardWebhooks';
ALTER TABLE webhooks ADD COLUMN signature_header text;
ALTER TABLE webhooks ADD COLUMN public_key text;
ALTER TABLE webhooks ADD COLUMN signing_key text;
ALTER TABLE webhooks ADD COLUMN previous_signing_key text;
