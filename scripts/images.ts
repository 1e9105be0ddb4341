import { buildProjectImages } from "../src/dev/cluster-images.ts";

/** `npm run images`: builds the sidecar and manager images from the Dockerfile with buildah (cached by content). */
const images = await buildProjectImages(["sidecar", "manager"], (line) =>
  process.stderr.write(`[images] ${line}\n`),
);
for (const image of images) {
  console.log(`${image.name}\t${(image.sizeBytes / 1e6).toFixed(1)} MB\t${image.archive}`);
}
