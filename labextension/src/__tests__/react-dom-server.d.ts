// react-dom ships no types and @types/react-dom is not a dependency: the one
// function the unit tests use to render a view to HTML.
declare module 'react-dom/server' {
  import type { ReactElement } from 'react';
  export function renderToStaticMarkup(element: ReactElement): string;
}
