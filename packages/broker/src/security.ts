/**
 * Keeping secrets out of messages and telling certificate failures apart:
 * transports share these so that every error they raise reads the same way.
 */

/**
 * The URL with its password (and a user name that carries one) replaced by
 * `***`, for error messages and logs: `mqtt://app:secret@host` becomes
 * `mqtt://app:***@host`. Text that is not a URL has anything before an `@`
 * after `//` masked.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/[^/@\s]*@/g, '//***@');
  }
}

/** `text` with every occurrence of the given secrets (passwords, tokens) replaced by `***`. */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) if (secret && secret.length >= 3) out = out.split(secret).join('***');
  return out;
}

/** Node's codes for a peer certificate that did not verify, or a host name it does not cover. */
const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Whether an error (or one of its causes) says that TLS verification failed:
 * the broker's certificate is not trusted, expired or names another host, or
 * the broker refused ours (an alert about a bad or missing client certificate).
 */
export function isCertificateError(error: unknown): boolean {
  for (let e = error, i = 0; e !== null && typeof e === 'object' && i < 8; i++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && CERTIFICATE_CODES.has(code)) return true;
    // The broker's alert when it refused our certificate (mutual TLS): OpenSSL names it in the message.
    if (typeof message === 'string' && /alert (bad certificate|certificate required|unknown ca|certificate unknown|certificate expired)/i.test(message))
      return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
