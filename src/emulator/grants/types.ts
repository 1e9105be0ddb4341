/** A successful token response and what to log about it (never the token itself). */
export interface GrantResult {
  body: {
    token_type: "Bearer";
    expires_in: number;
    ext_expires_in: number;
    access_token: string;
    scope?: string;
    refresh_token?: string;
    id_token?: string;
    client_info?: string;
  };
  log: Record<string, unknown>;
}
