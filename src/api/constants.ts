/** The names of the API (group, kinds, labels, annotations): one place, shared by the operator, the webhook, the sidecar and the chart. */

export const GROUP = "agentid.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = "AgentIdentity";
export const PLURAL = "agentidentities";
export const SHORT_NAMES: readonly string[] = ["agentid", "aid"];
export const CRD_NAME = `${PLURAL}.${GROUP}`;
export const BLUEPRINT_KIND = "AgentIdentityBlueprint";
export const BLUEPRINT_PLURAL = "agentidentityblueprints";
export const BLUEPRINT_SHORT_NAMES: readonly string[] = ["blueprint", "aib"];
export const BLUEPRINT_CRD_NAME = `${BLUEPRINT_PLURAL}.${GROUP}`;

/** Pod label that opts a pod in (the webhook's objectSelector). */
export const LABEL_INJECT = "agentid.io/inject";
/** Namespace label that opts every annotated pod of a namespace in. */
export const LABEL_NAMESPACE_INJECTION = "agentid.io/injection";
/** Names the AgentIdentity on a pod. */
export const ANNOTATION_IDENTITY = "agentid.io/identity";
/**
 * Label on a ServiceAccount, with an AgentIdentity's name as its value: the account opts in to being
 * bound by that identity (set by the operator on accounts it creates, by the namespace's owners on
 * existing ones). Without it the operator neither uses an existing account nor mints tokens for it.
 */
export const LABEL_SERVICE_ACCOUNT_BINDING = "agentid.io/agentidentity";
/** Written by the webhook on pods: `<AgentIdentity name>@<generation>`. */
export const ANNOTATION_INJECTED = "agentid.io/injected";
/** Label on objects the operator created (ServiceAccounts). */
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const MANAGER_NAME = "agentid";

export const SIDECAR_CONTAINER = "agentid-sidecar";
export const DEFAULT_SIDECAR_PORT = 5000;
export const TOKEN_VOLUME = "agentid-token";
export const TOKEN_AUDIENCE = "api://AzureADTokenExchange";
export const TOKEN_MOUNT_PATH = "/var/run/secrets/agentid/token";
export const TOKEN_FILE = `${TOKEN_MOUNT_PATH}/azure-identity-token`;
export const WEBHOOK_PATH = "/mutate-v1-pod";

export const DEFAULT_INSTANCE = "https://login.microsoftonline.com/";
/** Default lifetime of the sidecar's projected token (AgentIdentity spec.sidecar.tokenExpirationSeconds). */
export const DEFAULT_TOKEN_EXPIRATION_SECONDS = 3600;
/** The scope of the blueprint's token request for the exchange token (leg 1). */
export const EXCHANGE_SCOPE = `${TOKEN_AUDIENCE}/.default`;
export const CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** Microsoft Graph allows at most this many federated identity credentials per application. */
export const MAX_FEDERATED_CREDENTIALS = 20;

/**
 * Finalizer the operator puts on an AgentIdentity before it writes anything to Entra for it (a federated
 * credential in Graph mode, a created agent identity), so that a deletion can never skip the clean-up.
 */
export const FINALIZER_FEDERATED_CREDENTIAL = "agentid.io/cleanup";
export const FINALIZER = FINALIZER_FEDERATED_CREDENTIAL;

export const CONDITION_READY = "Ready";
export const CONDITION_VERIFIED = "Verified";
export const CONDITION_FEDERATION = "FederationConfigured";
export const CONDITION_TYPES: readonly string[] = [CONDITION_READY, CONDITION_VERIFIED, CONDITION_FEDERATION];
