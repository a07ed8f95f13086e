import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';
import prettierRecommended from 'eslint-plugin-prettier/recommended';
import globals from 'globals';
import jupyterPlugin from '@jupyter/eslint-plugin';

export default defineConfig([
  {
    ignores: [
      'node_modules',
      'lib',
      'dist',
      'coverage',
      '**/*.js',
      '**/*.d.ts',
      'ui-tests'
    ]
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  jupyterPlugin.configs.recommended,
  {
    files: ['**/*.ts', '**/*.tsx'],
    plugins: {
      jupyter: jupyterPlugin
    },
    languageOptions: {
      globals: {
        ...globals.browser,
        ...globals.es2015
      },
      parserOptions: {
        // The unit tests (src/__tests__) are type-checked by their own
        // tsconfig, so that the library build leaves them out.
        project: ['tsconfig.json', 'tsconfig.test.json'],
        sourceType: 'module'
      }
    },
    rules: {
      '@typescript-eslint/naming-convention': [
        'error',
        {
          selector: 'interface',
          format: ['PascalCase'],
          custom: {
            regex: '^I[A-Z]',
            match: true
          }
        }
      ],
      '@typescript-eslint/no-unused-vars': ['warn', { args: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-namespace': 'off',
      '@typescript-eslint/no-use-before-define': 'off',
      curly: ['error', 'all'],
      eqeqeq: 'error',
      'prefer-arrow-callback': 'error',
      // The sidebar tab must exist as soon as the app starts, so the panel
      // and its model are needed by activate() itself.
      'jupyter/prefer-lazy-imports': [
        'warn',
        { ignoreImports: ['./panel', './model'] }
      ],
      // Everything the panel renders comes from the audit trail, i.e. from
      // user-controlled strings: React escapes text, raw HTML sinks do not.
      'no-restricted-properties': [
        'error',
        { property: 'innerHTML', message: 'Render trail data with React or textContent.' },
        { property: 'outerHTML', message: 'Render trail data with React or textContent.' },
        { property: 'insertAdjacentHTML', message: 'Render trail data with React or textContent.' }
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "JSXAttribute[name.name='dangerouslySetInnerHTML']",
          message: 'Render trail data as text, never as HTML.'
        }
      ]
    }
  },
  prettierRecommended
]);
