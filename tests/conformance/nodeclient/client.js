// A session against the ECI emulator through the official Node SDK (@alicloud/eci20180808), for
// tests/conformance. Usage: node client.js ENDPOINT KEY SECRET REGION IMAGE SIGNATURE MODE
//   SIGNATURE: "v3" (the SDK's default, ACS3-HMAC-SHA256) or "v2" (its signatureAlgorithm "v2":
//   the RPC signature v1, HMAC-SHA1 parameters in the query).
//   MODE: "session" (the nine actions) or "refusals" (a wrong secret, a nonce used twice, a
//   request dated 20 minutes ago).
// Each step prints one JSON line: {step, ok: true, value} or {step, ok: false, status, code}.
"use strict";
const Eci = require("@alicloud/eci20180808");
const { Config } = require("@alicloud/openapi-client");
// The utilities the SDK's own OpenAPI client uses (it may carry its own copies of them).
const fromClient = (name) =>
  require(require.resolve(name, { paths: [require.resolve("@alicloud/openapi-client")] })).default;
const OpenApiUtil = fromClient("@alicloud/openapi-util");
const Util = fromClient("@alicloud/tea-util");

const [endpoint, keyId, secret, region, image, signature, mode] = process.argv.slice(2);
const label = `node-${signature}`;
let failed = false;

function client(withSecret) {
  const config = new Config({
    accessKeyId: keyId,
    accessKeySecret: withSecret,
    endpoint,
    protocol: "http",
    regionId: region,
  });
  if (signature === "v2") config.signatureAlgorithm = "v2";
  return new Eci.default(config);
}

function emit(step, value, err) {
  const line = { step, ok: !err };
  if (err) {
    failed = true;
    line.status = err.statusCode ?? err.data?.statusCode;
    line.code = err.code;
    line.error = String(err.message).slice(0, 300);
  } else {
    line.value = value;
  }
  console.log(JSON.stringify(line));
}

async function step(name, call) {
  try {
    const answer = await call();
    emit(name, answer.body.toMap(), null);
    return answer.body;
  } catch (err) {
    emit(name, null, err);
    return null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForCache(eci, id) {
  const deadline = Date.now() + 60000;
  for (;;) {
    const got = await eci.describeImageCaches(
      new Eci.DescribeImageCachesRequest({ regionId: region, imageCacheId: id }),
    );
    const cache = got.body.imageCaches[0];
    // The cache itself, as the Go client prints it.
    if (["Ready", "Failed"].includes(cache.status) || Date.now() > deadline) return { body: cache };
    await sleep(100);
  }
}

async function session() {
  const eci = client(secret);
  const made = await step("CreateImageCache", () =>
    eci.createImageCache(
      new Eci.CreateImageCacheRequest({
        regionId: region,
        imageCacheName: label,
        image: [image],
        clientToken: `${label}-token`,
        tag: [new Eci.CreateImageCacheRequestTag({ key: "team", value: "node js" })],
      }),
    ),
  );
  if (!made) return;
  const id = made.imageCacheId;
  await step("DescribeImageCaches", () => waitForCache(eci, id));
  await step("UpdateImageCache", () =>
    eci.updateImageCache(
      new Eci.UpdateImageCacheRequest({
        regionId: region,
        imageCacheId: id,
        imageCacheName: `${label}-renamed`,
        image: [image],
      }),
    ),
  );
  await step("DescribeImageCaches", () => waitForCache(eci, id));
  await step("ListUsage", () => eci.listUsage(new Eci.ListUsageRequest({ regionId: region })));
  const group = await step("CreateContainerGroup", () =>
    eci.createContainerGroup(
      new Eci.CreateContainerGroupRequest({
        regionId: region,
        containerGroupName: `${label}-group`,
        cpu: 1,
        memory: 2,
        tag: [new Eci.CreateContainerGroupRequestTag({ key: "team", value: "node" })],
        container: [
          new Eci.CreateContainerGroupRequestContainer({
            name: "web",
            image,
            environmentVar: [
              new Eci.CreateContainerGroupRequestContainerEnvironmentVar({
                key: "GREETING",
                value: "hello world",
              }),
            ],
            port: [new Eci.CreateContainerGroupRequestContainerPort({ port: 80, protocol: "TCP" })],
          }),
        ],
      }),
    ),
  );
  if (!group) return;
  const ids = JSON.stringify([group.containerGroupId]);
  await step("DescribeContainerGroups", () =>
    eci.describeContainerGroups(
      new Eci.DescribeContainerGroupsRequest({ regionId: region, containerGroupIds: ids }),
    ),
  );
  await step("DescribeContainerGroupEvents", () =>
    eci.describeContainerGroupEvents(
      new Eci.DescribeContainerGroupEventsRequest({ regionId: region, containerGroupIds: ids }),
    ),
  );
  await step("DeleteContainerGroup", () =>
    eci.deleteContainerGroup(
      new Eci.DeleteContainerGroupRequest({
        regionId: region,
        containerGroupId: group.containerGroupId,
      }),
    ),
  );
  await step("DeleteImageCache", () =>
    eci.deleteImageCache(new Eci.DeleteImageCacheRequest({ regionId: region, imageCacheId: id })),
  );
}

function create(eci, name) {
  return eci.createImageCache(
    new Eci.CreateImageCacheRequest({
      regionId: region,
      imageCacheName: name,
      image: [image],
      clientToken: name,
    }),
  );
}

// The SDK takes its nonce and its time from these utilities at each call: a refusal test makes
// it sign a real request with a nonce already spent, or with an old time.
async function refusals() {
  await step("wrong-secret", () => create(client(`${secret}x`), `${label}-wrong-secret`));
  const eci = client(secret);
  const nonce = Util.getNonce;
  Util.getNonce = () => `node-fixed-nonce-${signature}`;
  await step("first-use-of-nonce", () => create(eci, `${label}-first-use`));
  await step("replayed-nonce", () => create(eci, `${label}-replayed`));
  Util.getNonce = nonce;
  const timestamp = OpenApiUtil.getTimestamp;
  const old = new Date(Date.now() - 20 * 60 * 1000).toISOString().replace(/\.\d+Z$/, "Z");
  OpenApiUtil.getTimestamp = () => old;
  await step("old-timestamp", () => create(eci, `${label}-old-timestamp`));
  OpenApiUtil.getTimestamp = timestamp;
}

(mode === "refusals" ? refusals() : session()).then(() => {
  process.exit(mode === "session" && failed ? 1 : 0);
});
