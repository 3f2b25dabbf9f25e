// The development issuer's test registry: a few invented people and their documents, and
// the outcome a verification of each comes to, so every branch of the S2S draft's
// verification state machine can be driven end to end. Nothing here is real data.

export type Outcome =
  /** APPROVED at once. */
  | "approve"
  /** ADDITIONAL_INFO_REQUIRED: a proof-of-address document, then APPROVED. */
  | "document"
  /** PENDING; a decision follows (`decide`, or after `pendingDecisionMs`) and is notified. */
  | "pending"
  /** DENIED. */
  | "deny";

export interface Person {
  documentNumber: string;
  givenName: string;
  familyName: string;
  birthdate: string;
  nationality: string;
  outcome: Outcome;
  /** Which credential configurations this person may get. */
  documents: CredentialConfigurationId[];
  /** The credentials of this person are issued asynchronously (a 202 first, then CREDENTIAL_READY). */
  asyncIssuance?: boolean;
}

export const CREDENTIAL_CONFIGURATIONS = {
  identity_card: {
    format: "dc+sd-jwt",
    vct: "urn:hello-mesh:dev:identity-card",
    display: [{ name: "Identity card (development)", locale: "en" }],
  },
  driving_licence: {
    format: "dc+sd-jwt",
    vct: "urn:hello-mesh:dev:driving-licence",
    display: [{ name: "Driving licence (development)", locale: "en" }],
  },
} as const;
export type CredentialConfigurationId = keyof typeof CREDENTIAL_CONFIGURATIONS;

export const isCredentialConfigurationId = (value: string): value is CredentialConfigurationId =>
  Object.hasOwn(CREDENTIAL_CONFIGURATIONS, value);

/** The document the "document" outcome asks for. */
export const PROOF_OF_ADDRESS = "proof_of_address";

export const DEV_PEOPLE: readonly Person[] = [
  { documentNumber: "D-1001", givenName: "Ada", familyName: "Lovelace", birthdate: "1990-12-10", nationality: "GB", outcome: "approve", documents: ["identity_card", "driving_licence"] },
  { documentNumber: "D-1002", givenName: "Grace", familyName: "Hopper", birthdate: "1986-12-09", nationality: "US", outcome: "document", documents: ["identity_card", "driving_licence"] },
  { documentNumber: "D-1003", givenName: "Alan", familyName: "Turing", birthdate: "1992-06-23", nationality: "GB", outcome: "pending", documents: ["identity_card"] },
  { documentNumber: "D-1004", givenName: "Mallory", familyName: "Forger", birthdate: "1980-01-01", nationality: "ZZ", outcome: "deny", documents: ["identity_card"] },
  { documentNumber: "D-1005", givenName: "Katherine", familyName: "Johnson", birthdate: "1988-08-26", nationality: "US", outcome: "approve", documents: ["identity_card"], asyncIssuance: true },
];

/** The claims of one person's credential of one configuration. */
export function credentialClaims(person: Person, configuration: CredentialConfigurationId): Record<string, unknown> {
  const common = { given_name: person.givenName, family_name: person.familyName, birthdate: person.birthdate };
  if (configuration === "identity_card") {
    return { ...common, nationality: person.nationality, document_number: person.documentNumber, age_over_18: true };
  }
  return { ...common, licence_number: `L-${person.documentNumber.slice(2)}`, driving_privileges: ["B"] };
}

/** Finds the person a verification's data names: document number, family name and birthdate must all match. */
export function findPerson(
  people: readonly Person[],
  data: { documentNumber?: unknown; familyName?: unknown; birthdate?: unknown },
): Person | "mismatch" | undefined {
  const person = people.find((p) => p.documentNumber === data.documentNumber);
  if (!person) return undefined;
  return person.familyName === data.familyName && person.birthdate === data.birthdate ? person : "mismatch";
}
