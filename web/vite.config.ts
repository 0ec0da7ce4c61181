import { defineConfig } from "vitest/config";

// No @vitejs/plugin-react: esbuild compiles TSX with the automatic JSX runtime
// (keeps the install small and works with vite 7 on this machine's npm).
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: { outDir: "dist", sourcemap: false, target: "es2020" },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
