// Validate a GLB with the Khronos glTF validator; prints the report's issue counts as JSON.
const fs = require("fs");
const validator = require("gltf-validator");
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
validator
  .validateBytes(data, { maxIssues: 100 })
  .then((report) => {
    console.log(JSON.stringify({ issues: report.issues, info: report.info }));
  })
  .catch((err) => {
    console.error(String(err));
    process.exit(1);
  });
