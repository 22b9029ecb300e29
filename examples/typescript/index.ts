// An image cache and a container group that uses it, on the local backend (or the one the
// stack's eci-imagecache:* config names). The SDK is generated from the plugin's schema.
import * as pulumi from "@pulumi/pulumi";
import * as eci from "./sdk/nodejs";

const config = new pulumi.Config();
const registry = config.get("registry") ?? "127.0.0.1:5055";

const cache = new eci.ImageCache("cache", {
    images: [`${registry}/demo/web:1.0`, `${registry}/demo/worker:1.0`],
    sizeGib: config.getNumber("sizeGib") ?? 5,
    layerReuse: true,
});

const web = new eci.ContainerGroup("web", {
    containers: [{ name: "web", image: `${registry}/demo/web:1.0`, ports: [80] }],
    restartPolicy: "Never",
    cache: "explicit",
    cacheId: cache.id, // stays known while the cache is updated in place: no replacement
});

export const cacheId = cache.cacheId;
export const cacheStatus = cache.status;
export const cacheSizeGib = cache.sizeGib;
export const webCache = web.cacheUsed;
