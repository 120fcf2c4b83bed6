// A frontend's whole journey through the API, with a client generated from the live OpenAPI
// document (openapi-typescript writes ./schema.d.ts; openapi-fetch makes the typed calls).
// tsc checks every path, body and response field below against the document, so an API
// change that would break a frontend fails the build before anything runs.
//
// Run by api/tests/test_generated_client.py: API_URL is the API, MAIL_DIR is where the test
// drops the token of each verification email (<address>.token), CLIP is a video file.
import { readFile, access } from "node:fs/promises";
import { join } from "node:path";
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Tokens = components["schemas"]["TokenPair"];

const apiUrl = required("API_URL");
const mailDir = required("MAIL_DIR");
const clip = required("CLIP");
const run = Date.now().toString(36);

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`journey failed: ${what}`);
}

// Read-your-writes the way a browser app on another origin does it: remember the
// X-DB-Position of each answer and send it back, so a read after a write sees the write.
function readYourWrites(): Middleware {
  let position: string | null = null;
  return {
    onRequest({ request }) {
      if (position) request.headers.set("X-DB-Position", position);
      return request;
    },
    onResponse({ response }) {
      position = response.headers.get("X-DB-Position") ?? position;
      return response;
    },
  };
}

function bearer(tokens: { access_token: string }): Middleware {
  return {
    onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${tokens.access_token}`);
      return request;
    },
  };
}

class Account {
  readonly api = createClient<paths>({ baseUrl: apiUrl });
  tokens: Tokens | null = null;
  id = 0;

  constructor(
    readonly username: string,
    readonly role: "job_seeker" | "employer",
  ) {
    this.api.use(readYourWrites());
  }

  get email(): string {
    return `${this.username}@example.com`;
  }

  signedIn(): ReturnType<typeof createClient<paths>> {
    check(this.tokens, `${this.username} is signed in`);
    const api = createClient<paths>({ baseUrl: apiUrl });
    api.use(readYourWrites(), bearer(this.tokens));
    return api;
  }
}

const PASSWORD = "journey-secret-42";

async function register(account: Account): Promise<void> {
  const { data, response } = await account.api.POST("/api/auth/register", {
    body: {
      email: account.email,
      username: account.username,
      password: PASSWORD,
      first_name: account.username,
      last_name: "Journey",
      role: account.role,
    },
  });
  check(data && response.status === 201, `register ${account.username}: ${response.status}`);
  account.id = data.id;
  check(data.email_verified === false, "a new account starts unverified");
}

async function verificationToken(account: Account): Promise<string> {
  const file = join(mailDir, `${account.email}.token`);
  for (let waited = 0; waited < 60_000; waited += 200) {
    try {
      await access(file);
      return (await readFile(file, "utf8")).trim();
    } catch {
      await sleep(200);
    }
  }
  throw new Error(`no verification email for ${account.email}`);
}

async function verify(account: Account): Promise<void> {
  const token = await verificationToken(account);
  const { response } = await account.api.POST("/api/auth/verify-email", { body: { token } });
  check(response.ok, `verify ${account.username}: ${response.status}`);
  const again = await account.api.POST("/api/auth/verify-email", { body: { token } });
  check(again.response.status === 400 && again.error?.code, "a verification link works once");
}

async function signIn(account: Account): Promise<void> {
  const { data, response } = await account.api.POST("/api/auth/login", {
    body: { email: account.email, password: PASSWORD },
  });
  check(data && response.status === 200, `sign in ${account.username}: ${response.status}`);
  account.tokens = data;
}

async function refresh(account: Account): Promise<void> {
  check(account.tokens, "signed in");
  const old = account.tokens.refresh_token;
  const { data, response } = await account.api.POST("/api/auth/refresh", { body: { refresh_token: old } });
  check(data && response.status === 200, `refresh: ${response.status}`);
  check(data.refresh_token !== old, "the refresh token rotates");
  account.tokens = data;
  const me = await account.signedIn().GET("/api/users/me");
  check(me.data?.id === account.id, "the refreshed access token works");
}

async function main(): Promise<void> {
  const employer = new Account(`boss${run}`, "employer");
  const seeker = new Account(`ann${run}`, "job_seeker");
  for (const account of [employer, seeker]) await register(account);
  for (const account of [employer, seeker]) {
    await signIn(account);
    const blocked = await account.signedIn().POST("/api/messages", {
      body: { recipient_id: account === employer ? seeker.id : employer.id, body: "too early" },
    });
    check(blocked.error?.code === "email_not_verified", "an unverified account cannot message");
    await verify(account);
  }
  await refresh(seeker);

  const boss = employer.signedIn();
  const ann = seeker.signedIn();

  const posted = await boss.POST("/api/jobs", {
    body: { title: "Backend engineer", description: "Queues and replicas, done right.", location: "Remote" },
  });
  check(posted.data && posted.response.status === 201, `post a job: ${posted.response.status}`);
  const jobId = posted.data.id;
  const read = await boss.GET("/api/jobs/{job_id}", { params: { path: { job_id: jobId } } });
  check(read.data?.title === "Backend engineer", "the employer reads the job back at once");

  const applied = await ann.POST("/api/jobs/{job_id}/apply", {
    params: { path: { job_id: jobId } },
    body: { cover_letter: "I would like this job." },
  });
  check(applied.data && applied.response.status === 201, `apply: ${applied.response.status}`);
  check(applied.data.status === "submitted", "a new application is submitted");
  const withdrawn = await ann.POST("/api/jobs/{job_id}/applications/{application_id}/withdraw", {
    params: { path: { job_id: jobId, application_id: applied.data.id } },
  });
  check(withdrawn.data?.status === "withdrawn", `withdraw: ${withdrawn.response.status}`);

  const followed = await ann.POST("/api/users/{user_id}/follow", { params: { path: { user_id: employer.id } } });
  check(followed.response.status === 204, `follow: ${followed.response.status}`);
  const sent = await ann.POST("/api/messages", { body: { recipient_id: employer.id, body: "Thanks for your time." } });
  check(sent.data && sent.response.status === 201, `message: ${sent.response.status}`);
  const inbox = await boss.GET("/api/messages/{other_user_id}", { params: { path: { other_user_id: seeker.id } } });
  check(inbox.data?.items.some((message) => message.id === sent.data.id), "the employer sees the message");

  const form = new FormData();
  form.append("file", new Blob([new Uint8Array(await readFile(clip))], { type: "video/mp4" }), "intro.mp4");
  const uploaded = await ann.POST("/api/videos/upload", {
    // The document types the multipart fields (a binary is a string to openapi-typescript);
    // the FormData is what travels, as in a browser.
    body: { file: "intro.mp4" },
    bodySerializer: () => form,
  });
  check(uploaded.data && uploaded.response.status === 202, `upload: ${uploaded.response.status}`);
  const videoId = uploaded.data.video_id;
  let status: string = uploaded.data.status;
  for (let waited = 0; status !== "ready" && status !== "failed" && waited < 120_000; waited += 500) {
    await sleep(500);
    const video = await ann.GET("/api/videos/{video_id}", { params: { path: { video_id: videoId } } });
    check(video.data, `poll the video: ${video.response.status}`);
    status = video.data.status;
  }
  check(status === "ready", `the video is processed (${status})`);

  const out = await ann.POST("/api/auth/logout", { body: { all_sessions: false } });
  check(out.response.status === 204, `sign out: ${out.response.status}`);
  const after = await ann.GET("/api/users/me");
  check(after.response.status === 401 && after.error?.code === "session_ended", "a signed-out session's token is refused");

  console.log(JSON.stringify({ ok: true, job: jobId, application: applied.data.id, video: videoId }));
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
