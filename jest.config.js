/**
 * Jest for the extension's pure TypeScript (the tag model), compiled by ts-jest with labextension/tsconfig.test.json.
 * Only `__tests__` folders under labextension/src are tests, so Playwright or Python test files are never picked up.
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/labextension/src'],
  testRegex: '/__tests__/.*\\.test\\.ts$',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/labextension/tsconfig.test.json' }]
  },
  moduleFileExtensions: ['ts', 'js', 'json']
};
