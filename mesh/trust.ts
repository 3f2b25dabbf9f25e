// The custodian CAs a component trusts, loaded from the peers' mesh bundles, and the
// check that binds a certificate's SPIFFE identity to the CA of the custodian it names.

import { X509Certificate } from "node:crypto";
import { type Component, type Identity, formatIdentity, parseIdentityUri } from "../internal/protocol/identity.js";
import { MalformedCertificateError, uriSubjectAltNames } from "./x509.js";

/** What the handshake and the authentication step concluded about a caller. */
export type PeerAuthentication =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly reason: string };

export class AuthenticationError extends Error {
  override name = "AuthenticationError";
}

/** One CA certificate per custodian. Immutable: reloading makes a new TrustStore. */
export class TrustStore {
  readonly #cas: ReadonlyMap<Component, X509Certificate>;

  constructor(cas: ReadonlyMap<Component, string | X509Certificate>) {
    const parsed = new Map<Component, X509Certificate>();
    for (const [component, ca] of cas) {
      const cert = typeof ca === "string" ? new X509Certificate(ca) : ca;
      if (!cert.ca) throw new Error(`the ${component} CA certificate is not a CA (basicConstraints CA:false)`);
      parsed.set(component, cert);
    }
    this.#cas = parsed;
  }

  has(component: Component): boolean {
    return this.#cas.has(component);
  }

  ca(component: Component): X509Certificate {
    const ca = this.#cas.get(component);
    if (!ca) throw new Error(`no CA loaded for the ${component} custodian: its mesh bundle is missing`);
    return ca;
  }

  /** PEM CA certificates for the TLS `ca` option, for the given custodians only. */
  pems(components: readonly Component[]): string[] {
    return components.filter((c) => this.#cas.has(c)).map((c) => this.ca(c).toString());
  }

  /**
   * Authenticates a peer's leaf certificate: exactly one URI SAN, a hello.mesh
   * identity, issued and signed by the CA of the custodian that identity names, and
   * currently valid. The TLS handshake has already checked the chain against the
   * union of trusted CAs; this narrows it to the one CA the identity is bound to, so a
   * Token-CA certificate claiming to be Orchestration is refused.
   *
   * Throws AuthenticationError and nothing else, whatever the certificate holds: a
   * peer chooses it, and its key may be of any type (RSA, P-256, Ed25519, ...).
   */
  authenticate(leaf: X509Certificate, now = new Date()): Identity {
    try {
      return this.#authenticate(leaf, now);
    } catch (error) {
      if (error instanceof AuthenticationError) throw error;
      // Not expected (uriSans converts what the parser refuses); the reason stays generic
      // so that nothing read from the certificate reaches a peer or a log.
      throw new AuthenticationError("the certificate could not be read", { cause: error });
    }
  }

  #authenticate(leaf: X509Certificate, now: Date): Identity {
    const uris = uriSans(leaf);
    if (uris.length !== 1) {
      throw new AuthenticationError(
        `the client certificate has ${uris.length} URI SANs; a mesh certificate carries exactly one (spiffe://hello.mesh/<component>)`,
      );
    }
    const identity = parseIdentityUri(uris[0]!);
    if (!identity) {
      throw new AuthenticationError(
        "the client certificate's URI SAN is not a hello.mesh identity (spiffe://hello.mesh/<component>[/operator])",
      );
    }
    const ca = this.#cas.get(identity.component);
    if (!ca || !leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
      throw new AuthenticationError(
        `the certificate claims ${formatIdentity(identity)} but was not issued by the ${identity.component} custodian's CA`,
      );
    }
    if (now < new Date(leaf.validFrom) || now > new Date(leaf.validTo)) {
      throw new AuthenticationError(`the ${formatIdentity(identity)} certificate is outside its validity period`);
    }
    return identity;
  }
}

/**
 * The URI entries (GeneralName type 6) of a certificate's subjectAltName, read from
 * the certificate's DER (x509.ts) rather than from Node's rendered "URI:a, DNS:b"
 * string, whose quoting rules would be one more thing for an attacker to play with.
 * A certificate whose extensions are not strict DER (two subjectAltNames, a SAN that is
 * not GeneralNames, a non-ASCII or over-long URI, ...) is an AuthenticationError.
 */
export function uriSans(cert: X509Certificate): string[] {
  try {
    return uriSubjectAltNames(cert.raw);
  } catch (error) {
    if (error instanceof MalformedCertificateError) {
      throw new AuthenticationError(`the certificate is malformed: ${error.message}`, { cause: error });
    }
    throw error;
  }
}
