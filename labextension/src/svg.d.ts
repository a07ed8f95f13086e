// SVG files imported from TypeScript are bundled as raw strings.
declare module '*.svg' {
  const value: string;
  export default value;
}
